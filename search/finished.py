"""A model that exists already, as a builder: a factory, a `.keras` file or a model object.

The search's trial runner builds every model as `build(cures, input_shape, num_classes)`
(`search.builders`). A finished model knows nothing of `cures`, so `FinishedModel` makes
it (calls the factory, loads the file, or copies the object) and applies the cures that
fit a finished model: the trial's activation through `keras_relu.replace_activations`
(its report kept on `cures.swap_report` for the trial's run), and its initializer by
re-initialising the weight layers (always for a factory; for a file or an object only when
asked, else their weights are where fine-tuning starts). Optimizer, learning rate,
schedule, clipping, ReDo and dead-unit pruning come from the trial runner as for any model;
the dimensions only a builder can apply are not searched (`not_applicable`).
"""

from search import UsageError

BUILDER_ONLY = ("batch_norm", "dropout", "residual", "depth", "width")
OFF = {"batch_norm": False, "dropout": 0.0, "residual": False}  # what a finished model has
FACTORY, SAVED, INSTANCE = "factory", "saved", "instance"


class FinishedModel:
    """Builder protocol over `make(input_shape, num_classes) -> keras.Model`.

    Attributes:
        kind: "factory", "saved" (a `.keras` file) or "instance" (a model object).
        reinitialize: re-initialise the weight layers with the trial's initializer
            (always for a factory).
        pretrained: whether a trial starts from the model's own weights.
    """

    def __init__(self, make, kind, reinitialize=False, name=None):
        self.make, self.kind = make, kind
        self.reinitialize = reinitialize or kind == FACTORY
        self.__qualname__ = name or getattr(make, "__qualname__", kind)

    @property
    def pretrained(self):
        return not self.reinitialize

    def __call__(self, cures, input_shape, num_classes):
        import keras

        import keras_relu

        model = self.make(input_shape, num_classes)
        if not isinstance(model, keras.Model):
            raise UsageError(f"the model {self.kind} returned {type(model).__name__}, "
                             "not a keras.Model")
        if self.kind == FACTORY and model.compiled:
            raise UsageError("the model factory returned a compiled model; return it "
                             "uncompiled: each trial compiles it with its own optimizer")
        initializer = cures.config.get("initializer") if self.reinitialize else None
        try:
            swapped = keras_relu.replace_activations(
                model, cures.config.get("activation", "relu"), initializer=initializer)
        except ValueError as err:
            raise UsageError(f"the {self.kind}'s model: {err}") from None
        cures.swap_report = swapped.swap_report
        cures.activations_made += len(swapped.swap_report.replaced)
        return swapped


def not_applicable(kind, reinitialize=False):
    """The dimensions a model of `kind` cannot take (None: a builder takes them all)."""
    if kind not in (FACTORY, SAVED, INSTANCE):
        return ()
    return BUILDER_ONLY + (() if kind == FACTORY or reinitialize else ("initializer",))


def read_keras_file(path, prefix=""):
    """The `keras.Model` in the `.keras` file `path`; UsageError (its message starting
    with `prefix`) for a missing file, one that is no Keras model, or one Keras cannot load."""
    import pathlib
    import zipfile

    import keras

    import keras_relu  # noqa: F401  (registers the layers a swapped model holds)

    path = pathlib.Path(path)
    if not path.is_file():
        raise UsageError(f"{prefix}no model file {path}")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{prefix}{path} is not a Keras model file (not a .keras archive)")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UsageError(f"{prefix}{path} is not a Keras model Keras can load: {first}") from None
    if not isinstance(model, keras.Model):
        raise UsageError(f"{prefix}{path} holds a {type(model).__name__}, not a keras.Model")
    return model


def applicable(space, build, reinitialize):
    """`space` without what the model cannot take (a finished model: the builder's
    dimensions), said in one warning."""
    import warnings

    kind = getattr(build, "kind", None)
    dropped = [name for name in not_applicable(kind, reinitialize) if name in space.names]
    if not dropped:
        return space
    why = "only a builder applies them"
    if "initializer" in dropped:
        why += "; the initializer re-initialises the model with reinitialize=True"
    warnings.warn(f"a {kind} model takes the cures that fit a finished model; not searched: "
                  f"{', '.join(dropped)} ({why})", stacklevel=5)
    return space.without(dropped, OFF)


def load_keras_file(path):
    """`make` for a `.keras` file: checked now, loaded afresh for every trial."""
    import pathlib

    path = pathlib.Path(path).resolve()
    read_keras_file(path, "--model: ")

    def make(input_shape=None, num_classes=None):
        return read_keras_file(path, "--model: ")

    make.__qualname__ = str(path)
    return make
