"""The model builder protocol, and the built-in MLP / CNN written against it.

A builder is a function `build(cures, input_shape, num_classes) -> keras.Model` that
returns an *uncompiled* model; the trial runner compiles it with the trial's optimizer,
clipping and learning-rate schedule. `cures` carries the trial's choices:

    def build(cures, input_shape, num_classes):
        inputs = keras.Input(input_shape)
        x = cures.dense(cures.config["units"])(inputs)   # Dense, [BatchNorm], activation, [Dropout]
        x = cures.dense(cures.config["units"])(x)        # a skip connection if cures.residual
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
"""

import keras
from keras import layers

import keras_relu

INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform",
                "lecun_normal", "orthogonal", "rai")  # rai: keras_relu.RandomizedAsymmetric


class Config(dict):
    """A trial's config that remembers which dimensions were asked for (`read`), so that
    a dimension nothing reads can be named (`unread()`). Copying it (`dict(config)`,
    `{**config}`, `items()`, `values()`) reads every dimension."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)

    def __iter__(self):  # dict(config) and {**config} then read through __getitem__
        return super().__iter__()

    def keys(self):
        return super().keys()

    def items(self):
        self.read.update(self)
        return super().items()

    def values(self):
        self.read.update(self)
        return super().values()

    def copy(self):
        self.read.update(self)
        return dict(self)

    def unread(self):
        """The dimensions no one has asked for, in the config's order."""
        return [key for key in super().__iter__() if key not in self.read]


class Cures:
    """The trial's cures, for a model builder.

    Attributes:
        config: the trial's whole config (the user's own dimensions included), a `Config`
            that records which dimensions are read.
        initializer: the kernel initializer (a name Keras knows, or a fresh
            `keras_relu.RandomizedAsymmetric` for "rai").
        batch_norm, dropout, residual: the trial's choices (False, 0.0, False if the
            space does not have them).
    """

    def __init__(self, config):
        self.config = Config(config)
        self.activations_made = 0

    @property
    def initializer(self):
        name = self.config.get("initializer", "he_normal")
        return keras_relu.RandomizedAsymmetric() if name == "rai" else name

    @property
    def batch_norm(self):
        return bool(self.config.get("batch_norm", False))

    @property
    def dropout(self):
        return float(self.config.get("dropout", 0.0))

    @property
    def residual(self):
        return bool(self.config.get("residual", False))

    def activation(self, name=None):
        """A fresh layer of the trial's activation, named `activation_<k>` (k counts the
        layers made so far), so per-layer metric keys are alike in every trial."""
        layer = keras_relu.activation_layer(self.config.get("activation", "relu"),
                                            name=name or f"activation_{self.activations_made}")
        self.activations_made += 1
        return layer

    def dense(self, units, dropout=True, **kwargs):
        """A block: Dense (the trial's initializer; no bias before batch norm), optional
        BatchNormalization, the activation, Dropout if `dropout` and the trial has some."""
        return Block(self, layers.Dense(units, **self._weights(kwargs)), dropout)

    def conv2d(self, filters, kernel_size=3, dropout=False, **kwargs):
        """A block: Conv2D (`padding="same"` unless given), then as `dense`."""
        kwargs.setdefault("padding", "same")
        return Block(self, layers.Conv2D(filters, kernel_size, **self._weights(kwargs)), dropout)

    def _weights(self, kwargs):
        return {"use_bias": not self.batch_norm, "kernel_initializer": self.initializer, **kwargs}


class Block:
    """Weight layer, [BatchNormalization], activation, [Dropout]. Called on a tensor `x`
    whose shape the weight layer keeps, with the trial's `residual`, it adds the skip
    connection before the activation, as ResNet does: `act(x + BN(W x))`. `layers` lists
    the layers (without the skip), for a Sequential model."""

    def __init__(self, cures, weight_layer, dropout):
        self.residual = cures.residual
        self.layers = [weight_layer]
        if cures.batch_norm:
            self.layers.append(layers.BatchNormalization())
        self.activation = cures.activation()
        self.layers.append(self.activation)
        if dropout and cures.dropout:
            self.layers.append(layers.Dropout(cures.dropout))

    def __call__(self, x):
        y = x
        for layer in self.layers:
            if layer is self.activation and self.residual and tuple(y.shape) == tuple(x.shape):
                y = layers.Add()([x, y])
            y = layer(y)
        return y


def build_default(cures, input_shape, num_classes):
    """The built-in model: an MLP of `depth` Dense blocks of `width` units for vectors; for
    images, `depth` Conv2D blocks (2x2 max-pooling after each while the maps allow),
    global average pooling and dropout. A softmax classifier on top."""
    width, depth = cures.config["width"], cures.config["depth"]
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    if len(input_shape) == 1:
        for _ in range(depth):
            x = cures.dense(width)(x)
    else:
        for _ in range(depth):
            x = cures.conv2d(width, 3)(x)
            if min(x.shape[1:3]) >= 2:
                x = layers.MaxPooling2D()(x)
        x = layers.GlobalAveragePooling2D()(x)
        if cures.dropout:
            x = layers.Dropout(cures.dropout)(x)
    # float32 output keeps the softmax stable under a mixed-precision policy.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


DEFAULT = "search.builders:build_default"
