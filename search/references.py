"""References to the user's code that another process can follow: `package.module:function`
or `path/to/file.py:function` (`--model`, `--data`). A worker, maybe on another machine,
imports the function from the reference stored with the study."""

import hashlib
import importlib
import importlib.util
import pathlib
import sys

from search import UsageError

FILE_MODULES = "keras_relu_user_model_"  # prefix of modules loaded from a file path


def load_function(ref, flag):
    """The function `ref` names; UsageError (starting with `flag`) if it cannot be had."""
    if not isinstance(ref, str) or ":" not in ref:
        raise UsageError(f"{flag} expects MODULE:FUNCTION or FILE.py:FUNCTION, got {ref!r}")
    where, _, name = ref.rpartition(":")
    module = _import_file(where, flag) if where.endswith(".py") else _import_module(where, flag)
    function = getattr(module, name, None)
    if function is None or not callable(function):
        raise UsageError(f"{flag}: {where} has no function {name!r}")
    return function


def _import_module(name, flag):
    try:
        return importlib.import_module(name)
    except Exception as err:  # ModuleNotFoundError, or the module's own error
        raise UsageError(f"{flag}: cannot import {name}: {type(err).__name__}: {err}") from None


def _import_file(path, flag):
    path = pathlib.Path(path).resolve()
    if not path.is_file():
        raise UsageError(f"{flag}: no file {path}")
    name = FILE_MODULES + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: a Keras class in it may look itself up
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise UsageError(f"{flag}: cannot import {path}: {type(err).__name__}: {err}") from None
    return module


def absolute(ref):
    """`ref` with a file path made absolute (a worker may start elsewhere)."""
    where, _, name = ref.rpartition(":")
    return f"{pathlib.Path(where).resolve()}:{name}" if where.endswith(".py") else ref


def of_function(function, what):
    """The reference of `function`; UsageError for one no other process can import."""
    module = sys.modules.get(getattr(function, "__module__", None))
    qualname = getattr(function, "__qualname__", "")
    if module is not None and module.__name__.startswith(FILE_MODULES):
        return f"{module.__file__}:{qualname}"
    if module is None or module.__name__ == "__main__" or "<" in qualname:
        raise UsageError(f"{what}: workers import it in another process; give a function "
                         "defined in an importable module or file, or its reference "
                         "'module:function' / 'file.py:function'")
    return f"{module.__name__}:{qualname}"
