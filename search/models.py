"""The user's model builder: found from a reference, named for workers, checked at start-up.

A reference is `package.module:function` or `path/to/file.py:function`. A worker, maybe
on another machine, imports the builder from the reference stored with the study. The
builder is called once on the data's shape before any study or run exists, so a builder
that cannot work is one line and exit status 2, not a failed search.
"""

import hashlib
import importlib
import importlib.util
import pathlib
import sys
import warnings

from search import UsageError

_FILE_MODULES = "keras_relu_user_model_"  # prefix of modules loaded from a file path


def load_builder(model=None):
    """The builder for `model`: a callable, a reference string, or None (the built-in)."""
    if model is None:
        from search.builders import build_default

        return build_default
    if _is_keras_object(model):
        raise UsageError(f"model= takes a builder function build(cures, input_shape, "
                         f"num_classes) that returns a new uncompiled model (or its reference "
                         f"'module:function' / 'file.py:function'), not a "
                         f"{type(model).__name__} instance: each trial builds its own")
    if callable(model):
        return model
    if not isinstance(model, str) or ":" not in model:
        raise UsageError(f"--model expects MODULE:FUNCTION or FILE.py:FUNCTION, got {model!r}")
    where, _, name = model.rpartition(":")
    module = _import_file(where) if where.endswith(".py") else _import_module(where)
    build = getattr(module, name, None)
    if build is None or not callable(build):
        raise UsageError(f"--model: {where} has no function {name!r}")
    return build


def _is_keras_object(model):
    """A Keras layer or model (callable, but not a builder); Keras is imported by now if
    the object is one."""
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.layers.Layer)


def _import_module(name):
    try:
        return importlib.import_module(name)
    except Exception as err:  # ModuleNotFoundError, or the module's own error
        raise UsageError(f"--model: cannot import {name}: {type(err).__name__}: {err}") from None


def _import_file(path):
    path = pathlib.Path(path).resolve()
    if not path.is_file():
        raise UsageError(f"--model: no file {path}")
    name = _FILE_MODULES + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: a Keras class in it may look itself up
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise UsageError(f"--model: cannot import {path}: {type(err).__name__}: {err}") from None
    return module


def reference(model):
    """The string a worker imports the builder from (None: the built-in); a file path is
    made absolute. UsageError for a function no other process can import."""
    if model is None:
        return None
    if isinstance(model, str):
        where, _, name = model.rpartition(":")
        return f"{pathlib.Path(where).resolve()}:{name}" if where.endswith(".py") else model
    module = sys.modules.get(getattr(model, "__module__", None))
    qualname = getattr(model, "__qualname__", "")
    if module is not None and module.__name__.startswith(_FILE_MODULES):
        return f"{module.__file__}:{qualname}"
    if module is None or module.__name__ == "__main__" or "<" in qualname:
        raise UsageError("model=: workers import the builder in another process; give a "
                         "function defined in an importable module or file, or its reference "
                         "'module:function' / 'file.py:function'")
    return f"{module.__name__}:{qualname}"


def check_builder(build, config, data, loss=None, metrics=None, metric="val_accuracy"):
    """Build once with `config` on `data`'s shape and fit nothing: the builder must return
    an uncompiled `keras.Model` that takes the inputs; `metric` must be one it logs.
    Warns when the builder never asks `cures` for an activation."""
    import keras

    from search.builders import Cures
    from search.optimizers import compile_model

    cures = Cures(config)
    try:
        model = build(cures, data.input_shape, data.num_classes)
    except Exception as err:
        raise UsageError(f"the model builder raised {type(err).__name__}: {err}") from None
    if not isinstance(model, keras.Model):
        raise UsageError(f"the model builder returned {type(model).__name__}, not a keras.Model")
    if model.compiled:
        raise UsageError("the model builder returned a compiled model; return it uncompiled: "
                         "each trial compiles it with its own optimizer")
    try:
        model(data.x_train[:2])
        compile_model(model, config, 1, 1, loss, metrics)
        logged = model.evaluate(data.x_val[:2], data.y_val[:2], verbose=0, return_dict=True)
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise UsageError(f"the model does not take the data (inputs {tuple(data.input_shape)}, "
                         f"{data.num_classes} classes): {type(err).__name__}: {first}") from None
    valid = {*logged, *(f"val_{k}" for k in logged), "dead_fraction", "dormant_fraction",
             "zero_fraction"}
    if metric not in valid:
        raise UsageError(f"--metric {metric}: the model logs {', '.join(sorted(valid))}")
    if not cures.activations_made:
        warnings.warn("the model builder never calls cures.activation() (or cures.dense / "
                      "cures.conv2d): the activation dimension changes nothing", stacklevel=2)
    keras.utils.clear_session()
