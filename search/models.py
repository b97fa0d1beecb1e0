"""The user's model: found from a reference, named for workers, checked at start-up.

`model=` (`--model`) takes a builder `build(cures, input_shape, num_classes)` (see
`search.builders`), a plain factory `make(input_shape, num_classes)` that knows nothing
of cures, a `.keras` file, or (from Python) a `keras.Model` object; the last three become
a `search.finished.FinishedModel`. A function is told apart by its signature: a first
parameter named `cures`, or three parameters, make a builder; two make a factory.
A reference is `package.module:function`, `path/to/file.py:function` or `path.keras`. A
worker, maybe on another machine, loads the model from the reference stored with the
study. The model is built once on the data's shape before any study or run exists, so a
model that cannot work is one line and exit status 2, not a failed search.
"""

import hashlib
import pathlib
import sys
import warnings

from search import UsageError
from search.references import absolute, load_function, of_function


def load_builder(model=None, reinitialize=False):
    """The builder for `model` (see the module docstring; None: the built-in): a builder
    as it is, anything else as a `FinishedModel`."""
    from search.finished import FACTORY, INSTANCE, SAVED, FinishedModel, load_keras_file

    if model is None:
        from search.builders import build_default

        return build_default
    if _is_keras_model(model):
        return FinishedModel(lambda *_: model, INSTANCE, reinitialize, model.name)
    if _is_keras_object(model):
        raise UsageError(f"model= takes a builder or factory function, a keras.Model or a "
                         f"reference 'module:function' / 'file.py:function' / 'file.keras'; "
                         f"not a {type(model).__name__} layer")
    if isinstance(model, str) and model.endswith(".keras"):
        return FinishedModel(load_keras_file(model), SAVED, reinitialize)
    if isinstance(model, str) and ":" in model:
        model = load_function(model, "--model")
    if not callable(model):
        raise UsageError(f"--model expects MODULE:FUNCTION, FILE.py:FUNCTION or FILE.keras "
                         f"(model=: also a function or a keras.Model), got {model!r}")
    return model if _is_builder(model) else FinishedModel(model, FACTORY)


def _is_keras_model(value):
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(value, keras.Model)


def _is_keras_object(value):
    """A Keras layer (callable, but neither a builder nor a model); Keras is imported by
    now if the object is one."""
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(value, keras.layers.Layer)


def _is_builder(function):
    """A builder takes (cures, input_shape, num_classes); a factory (input_shape,
    num_classes). UsageError for any other signature."""
    import inspect

    try:
        params = [p for p in inspect.signature(function).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return True  # no signature to read (a builtin): called as a builder
    required = [p for p in params if p.default is p.empty]
    if params and params[0].name == "cures" or len(required) == 3:
        return True
    if len(required) == 2 or (len(required) < 2 <= len(params)):
        return False
    raise UsageError(f"model=: {getattr(function, '__qualname__', function)} takes "
                     f"({', '.join(p.name for p in params)}); a builder takes (cures, "
                     "input_shape, num_classes), a factory (input_shape, num_classes)")


def reference(model, folder="mlruns/models"):
    """The string a worker loads the model from (None: the built-in); a file path is made
    absolute, a model object saved as a `.keras` file under `folder`. UsageError for a
    function no other process can import."""
    if model is None:
        return None
    if _is_keras_model(model):
        return str(save_instance(model, folder))
    if isinstance(model, str):
        return str(pathlib.Path(model).resolve()) if model.endswith(".keras") else absolute(model)
    return of_function(model, "model=")


def save_instance(model, folder):
    """`<folder>/<name>-<fingerprint>.keras`, written once, for workers in other processes."""
    digest = hashlib.sha1(model.to_json().encode())
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    path = pathlib.Path(folder).resolve() / f"{model.name}-{digest.hexdigest()[:12]}.keras"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    return path


def check_builder(build, config, data, loss=None, metrics=None, metric="val_accuracy"):
    """Build once with `config` on `data`'s shape and fit nothing: the builder must return
    an uncompiled `keras.Model` that takes the inputs; `metric` must be one it logs.
    Warns when the activation dimension can change nothing."""
    import keras

    from search.builders import Cures
    from search.finished import FinishedModel

    cures, finished = Cures(config), isinstance(build, FinishedModel)
    try:
        model = build(cures, data.input_shape, data.num_classes)
    except UsageError:
        raise
    except Exception as err:
        raise UsageError(f"the model builder raised {type(err).__name__}: {err}") from None
    if not isinstance(model, keras.Model):
        raise UsageError(f"the model builder returned {type(model).__name__}, not a keras.Model")
    if model.compiled and not finished:
        raise UsageError("the model builder returned a compiled model; return it uncompiled: "
                         "each trial compiles it with its own optimizer")
    _check_takes_data(model, config, data, loss, metrics, metric)
    if not cures.activations_made:
        why = (f"the {build.kind}'s model has no plain ReLU to swap" if finished else
               "the model builder never calls cures.activation() (or cures.dense / "
               "cures.conv2d)")
        warnings.warn(f"{why}: the activation dimension changes nothing", stacklevel=2)
    keras.utils.clear_session()


def _check_takes_data(model, config, data, loss, metrics, metric):
    from search.optimizers import compile_model

    x, y = data.sample(2)
    try:
        model(x)
        compile_model(model, config, 1, 1, loss, metrics)
        logged = model.evaluate(x, y, verbose=0, return_dict=True)
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise UsageError(f"the model does not take the data (inputs {tuple(data.input_shape)}, "
                         f"{data.num_classes} classes): {type(err).__name__}: {first}") from None
    valid = {*logged, *(f"val_{k}" for k in logged), "dead_fraction", "dormant_fraction",
             "zero_fraction"}
    if metric not in valid:
        raise UsageError(f"--metric {metric}: the model logs {', '.join(sorted(valid))}")
