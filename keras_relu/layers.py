"""SugarReLU, and `activation_layer(name)` over Keras' own activation layers."""

import keras
from keras import layers

from keras_relu.sugar import sugar
from keras_relu.surrogates import SURROGATES, NameView, get_surrogate

# Keyword arguments that belong to `keras.layers.Layer`, not to a surrogate.
_LAYER_KWARGS = frozenset(
    ("name", "dtype", "trainable", "autocast", "activity_regularizer",
     "input_shape", "input_dim", "batch_input_shape", "batch_size")
)


@keras.saving.register_keras_serializable(package="keras_relu")
class SugarReLU(layers.Layer):
    """ReLU forward, surrogate gradient backward (SUGAR, arXiv 2505.22074).

    Formula:

    ```
    forward:  y = relu(x) = max(x, 0)
    backward: dL/dx = dL/dy * s'(x)
    ```

    with `s` the surrogate, for example B-SiLU (the default):

    ```
    s(x)  = (x + a) * sigmoid(x) - a / 2,                        a = 1.67
    s'(x) = sigmoid(x) + (x + a) * sigmoid(x) * (1 - sigmoid(x))
    ```

    Args:
        surrogate: a name from `keras_relu.SURROGATES`. Defaults to `"bsilu"`.
        **kwargs: the surrogate's parameters (e.g. `a=1.67`), and base layer
            keyword arguments such as `name` and `dtype`.
    """

    def __init__(self, surrogate="bsilu", **kwargs):
        spec = get_surrogate(surrogate)
        params = {k: kwargs.pop(k) for k in list(kwargs) if k not in _LAYER_KWARGS}
        super().__init__(**kwargs)
        self.surrogate = spec.name
        self.params = spec.resolve(params)
        self.supports_masking = True
        self._build_at_init()

    def call(self, inputs):
        """`keras_relu.sugar(inputs, surrogate, **params)`: ReLU forward, `s'` backward."""
        return sugar(inputs, self.surrogate, **self.params)

    def compute_output_shape(self, input_shape):
        """The input's shape: the activation is element-wise."""
        return input_shape

    def get_config(self):
        return {**super().get_config(), "surrogate": self.surrogate, **self.params}


_KERAS_ACTIVATIONS = {
    "relu": lambda **kw: layers.Activation("relu", **kw),
    "leaky_relu": lambda negative_slope=0.01, **kw: layers.LeakyReLU(negative_slope, **kw),
    "prelu": layers.PReLU,
    "elu": layers.ELU,
    "selu": lambda **kw: layers.Activation("selu", **kw),
    "gelu": lambda **kw: layers.Activation("gelu", **kw),
    "silu": lambda **kw: layers.Activation("silu", **kw),
    "mish": lambda **kw: layers.Activation("mish", **kw),
}

ACTIVATIONS = NameView(
    lambda: (*_KERAS_ACTIVATIONS, *(f"sugar_{name}" for name in SURROGATES))
)


def activation_layer(name, /, **params):
    """A fresh Keras layer for `name`, one of `keras_relu.ACTIVATIONS`.

    `sugar_<surrogate>` gives a `SugarReLU`; the other names give Keras' own
    layers (`Activation("relu")`, `LeakyReLU` with slope 0.01, `PReLU`, `ELU`,
    `Activation("selu" | "gelu" | "silu" | "mish")`). `params` go to the layer.
    """
    if name in _KERAS_ACTIVATIONS:
        return _KERAS_ACTIVATIONS[name](**params)
    if isinstance(name, str) and name.startswith("sugar_") and name[6:] in SURROGATES:
        return SugarReLU(name[6:], **params)
    raise ValueError(
        f"Unknown activation {name!r}. Valid activations: {', '.join(ACTIVATIONS)}."
    )
