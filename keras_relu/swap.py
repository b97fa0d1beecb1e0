"""`replace_activations`: a model's ReLUs swapped for another activation, in one call.

The model given is never changed. A copy is made layer by layer through Keras' own
`keras.models.clone_model` (Sequential models, which it cannot extend, are rebuilt
here), every weight copied from its own layer, then the report of what was replaced
and what was skipped (`keras_relu.sites`) is attached as `swap_report`.
"""

import dataclasses

import keras
from keras import layers, tree

from keras_relu.graph import WEIGHT_LAYERS, functional
from keras_relu.initializers import RandomizedAsymmetric
from keras_relu.layers import ACTIVATIONS, activation_layer
from keras_relu.sites import ARGUMENT, LAYER, Site, survey

_KERNELS = ("kernel_initializer", "depthwise_initializer", "pointwise_initializer")


@dataclasses.dataclass
class SwapReport:
    """What `replace_activations` did: `replaced` and `skipped` sites (`keras_relu.sites.Site`:
    path, kind, outcome). Prints as a table; `to_dict()` gives plain data.

    Attributes:
        activation: the activation the sites were given (its name, or the layer's class).
        replaced: the sites replaced, in model order.
        skipped: the ReLU-like sites left alone, each with the reason as its outcome.
    """

    activation: str
    replaced: list
    skipped: list

    def to_dict(self):
        """Plain data (what the search logs as `swap_report.json`): the activation, and
        each replaced or skipped site as a dict of path, kind and outcome."""
        return {"activation": self.activation,
                "replaced": [dataclasses.asdict(s) for s in self.replaced],
                "skipped": [dataclasses.asdict(s) for s in self.skipped]}

    def __str__(self):
        rows = [(s.path, s.kind, "-> " + s.outcome) for s in self.replaced]
        rows += [(s.path, s.kind, "skipped: " + s.outcome) for s in self.skipped]
        count = len(self.replaced)
        head = (f"{count} ReLU site{'' if count == 1 else 's'} replaced by {self.activation}, "
                f"{len(self.skipped)} skipped")
        if not rows:
            return head
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        return "\n".join([head] + [f"  {a:<{widths[0]}}  {b:<{widths[1]}}  {c}"
                                   for a, b, c in rows])

    __repr__ = __str__


def replace_activations(model, activation="sugar_bsilu", *, relu6=False, where=None,
                        initializer=None, **params):
    """A copy of `model` with its plain ReLUs replaced by `activation`.

    Sites (see `keras_relu.sites`): `Activation("relu")`, a plain `ReLU()`, and the
    `activation="relu"` argument of Dense/EinsumDense/Conv layers, which becomes the same
    layer with a linear activation followed by the new activation layer
    (`<layer name>_activation`). A replaced layer keeps its name. Nested Functional and
    Sequential models are swapped at any depth; shared layers stay shared. Every other
    weight, `trainable` flag, layer name and input/output name is kept, each weight copied
    from its own layer. Skipped and listed, never changed: ReLU6 (unless `relu6=True`),
    other ReLU variants, a ReLU that gates another path, the output layer, recurrent
    layers and ReLUs inside custom layers' code.

    SUGAR's forward pass is ReLU, so with a `sugar_*` activation the copy predicts
    exactly what `model` predicts; only what it learns from then on changes.

    Example:

    ```python
    swapped = keras_relu.replace_activations(keras.saving.load_model("trained.keras"))
    print(swapped.swap_report)                # replaced and skipped sites
    swapped.compile("adam", "sparse_categorical_crossentropy")
    swapped.fit(x, y, epochs=3, callbacks=[keras_relu.DeadNeuronMonitor(probe=x)])
    ```

    Args:
        model: a Functional or Sequential model (a subclassed one is refused).
        activation: a name in `keras_relu.ACTIVATIONS` (with `params`), or a layer
            instance, copied for each site.
        relu6: also replace `ReLU(max_value=6)` and `Activation("relu6")` (this changes
            the forward pass where they cap at 6).
        where: `where(layer) -> bool`; sites for which it is false are skipped.
        initializer: re-initialise instead of copying weights: every weight layer's
            kernel from this initializer (a Keras name or instance, or `"rai"` for
            `keras_relu.RandomizedAsymmetric`), everything else from its own; for
            training from scratch.
        **params: the activation's parameters, e.g. `a=1.67` for `sugar_bsilu`.

    Returns:
        The new model, with `swap_report` (a `SwapReport`).
    """
    _check_model(model)
    make = _activation_factory(activation, params)
    found = survey(model, relu6=relu6, where=where)
    swapper = _Swapper(found.plan, make, _kernel_config(initializer))
    new = swapper.clone(model)
    if initializer is None:
        for old, copy in swapper.pairs:
            if old.built:
                copy.set_weights(old.get_weights())
    replaced = [Site(*found.kinds[key], swapper.outcomes[key]) for key in found.plan]
    new.swap_report = SwapReport(_describe(activation, params), replaced, found.skipped)
    return new


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"replace_activations expects a keras.Model, got {type(model).__name__}.")
    if not isinstance(model, keras.Sequential) and functional(model) is None:
        raise ValueError(
            f"replace_activations cannot read the graph of {model.name!r}, a subclassed "
            f"{type(model).__name__}: its layers are called in Python code. Build it as a "
            "Functional model (keras.Model(inputs, outputs)), or, for a search, write a "
            "builder that takes the trial's activation (`cures.activation()`).")


def _activation_factory(activation, params):
    """`make(name, dtype)` -> a fresh activation layer for one site."""
    if isinstance(activation, layers.Layer):
        if params:
            raise ValueError("Give an activation layer's parameters to the layer itself, "
                             f"not to replace_activations (got {sorted(params)}).")
        config = activation.get_config()
        return lambda name, dtype: type(activation).from_config(
            {**config, "name": name, "dtype": dtype})
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}. Valid activations: "
                         f"{', '.join(ACTIVATIONS)}, or a layer instance.")
    activation_layer(activation, **params)  # the parameters are checked now
    return lambda name, dtype: activation_layer(activation, name=name, dtype=dtype, **params)


def _describe(activation, params):
    if isinstance(activation, layers.Layer):
        return type(activation).__name__
    return activation + ("(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
                         if params else "")


def _kernel_config(initializer):
    """The serialised kernel initializer, or None."""
    if initializer is None:
        return None
    if initializer == "rai":
        initializer = RandomizedAsymmetric()
    return keras.initializers.serialize(keras.initializers.get(initializer))


def _inputs(model):
    """Fresh inputs like `model`'s, named as its input layers (clone_model would name
    them after the input tensors)."""
    names = {id(layer.output): layer.name for layer in model.layers
             if isinstance(layer, layers.InputLayer)}
    return tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, sparse=t.sparse,
                              name=names.get(id(t), t.name)), model.input)


class _Swapper:
    """Copies one model (and the models nested in it), layer by layer."""

    def __init__(self, plan, make, kernel):
        self.plan, self.make, self.kernel = plan, make, kernel
        self.cache = {}  # id(layer) -> its copy, shared by every nesting level
        self.after = {}  # id(copy of a layer whose argument was split) -> new activation
        self.pairs = []  # (layer, copy) whose weights are copied
        self.outcomes = {}  # id(site) -> the new layer's name and class

    def clone(self, model):
        if isinstance(model, keras.Sequential):
            new = self._sequential(model)
        else:
            new = keras.models.clone_model(model, input_tensors=_inputs(model),
                                           clone_function=self._layer,
                                           call_function=self._call, cache=self.cache)
        if not model.trainable:
            new.trainable = False
        return new

    def _sequential(self, model):
        copies = []
        for layer in model.layers:
            if id(layer) not in self.cache:
                self.cache[id(layer)] = self._layer(layer)
            copy = self.cache[id(layer)]
            copies += [copy, *([self.after[id(copy)]] if id(copy) in self.after else [])]
        if functional(model) is not None:
            spec = model.inputs[0]
            copies.insert(0, keras.Input(batch_shape=spec.shape, dtype=spec.dtype,
                                         name=spec.name))
        new = keras.Sequential(copies, name=model.name)
        if model.compiled:
            new.compile_from_config(model.get_compile_config())
        return new

    def _layer(self, layer):
        """The copy of one layer (an operation that is no layer, `x + 3.0`, is kept)."""
        if not isinstance(layer, layers.Layer):
            return layer
        if isinstance(layer, keras.Model):
            return self.clone(layer)
        how = self.plan.get(id(layer))
        if how == LAYER:
            new = self.make(layer.name, layer.dtype_policy)
            self.outcomes[id(layer)] = f"{new.name} ({type(new).__name__})"
            return new
        config = layer.get_config()
        if how == ARGUMENT:
            config["activation"] = "linear"
        if self.kernel is not None and isinstance(layer, WEIGHT_LAYERS):
            config.update({k: self.kernel for k in _KERNELS if k in config})
        new = type(layer).from_config(config)
        self.pairs.append((layer, new))
        if how == ARGUMENT:
            act = self.make(f"{layer.name}_activation", layer.dtype_policy)
            self.after[id(new)] = act
            self.outcomes[id(layer)] = f"linear {type(layer).__name__} + {act.name} " \
                                       f"({type(act).__name__})"
        return new

    def _call(self, layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        act = self.after.get(id(layer))
        return act(outputs) if act is not None else outputs
