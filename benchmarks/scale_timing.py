"""Timing wrappers for the scale benchmark: the real calls a worker makes, timed in place.

Nothing is replaced: each wrapper calls the original and records how long it took. Two
levels, so a slow call can be split into the store's round trips and everything else:
- the worker's operations, as the trial path makes them: `ask`, `report` (Trial.report),
  `prune` (Trial.should_prune), `tell`, `attr` (Trial.set_user_attr), `best` (the
  engine's "does this trial improve?" read);
- the stores underneath: every method of Optuna's RDB storage or gRPC proxy client
  (`optuna.<method>`; the outermost call only), and MLflow's tracking store
  (`mlflow.<method>`; a `log_batch` with metrics is one epoch's logging, `epoch_log`).
  A store call made inside an operation on the same thread is added to that
  operation's store time.
`install()` wraps; `dump(path)` writes what one process recorded as JSON.
"""

import functools
import json
import threading
import time

OPS = {"ask": ("optuna.study.study", "Study", "ask"),
       "report": ("optuna.trial._trial", "Trial", "report"),
       "prune": ("optuna.trial._trial", "Trial", "should_prune"),
       "attr": ("optuna.trial._trial", "Trial", "set_user_attr"),
       "tell": ("optuna.study._optimize", None, "_tell_with_warning"),
       "best": ("search.engines.optuna", None, "improves"),
       "trial": ("search.trial", None, "run_trial"),  # the whole trial, fit included
       "clear": ("keras.utils", None, "clear_session")}  # the runner's clean-up
MLFLOW = ("create_run", "log_batch", "update_run_info", "get_run", "search_runs",
          "get_experiment_by_name", "set_tag")
NOT_ERRORS = ("TrialPruned", "KeyboardInterrupt", "SystemExit", "GeneratorExit")

calls = {}  # op -> [[seconds, store seconds inside], ...]
errors = {}  # "op: ExceptionName" -> count
asked = []  # trial numbers this process was given by ask
_local = threading.local()


def _frames():
    if not hasattr(_local, "frames"):
        _local.frames, _local.in_store = [], False
    return _local.frames


def _error(op, err):
    name = type(err).__name__
    if name not in NOT_ERRORS:
        key = f"{op}: {name}"
        errors[key] = errors.get(key, 0) + 1


def _op(op, fn):
    @functools.wraps(fn)
    def timed(*args, **kwargs):
        frames = _frames()
        frames.append(0.0)
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except BaseException as err:
            _error(op, err)
            raise
        finally:
            store = frames.pop()
            calls.setdefault(op, []).append([time.perf_counter() - start, store])
        if op == "ask":
            asked.append(result.number)
        return result
    return timed


def _store(prefix, name, fn):
    @functools.wraps(fn)
    def timed(*args, **kwargs):
        frames = _frames()
        if _local.in_store:  # a store method calling another: time the outer one only
            return fn(*args, **kwargs)
        _local.in_store = True
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except BaseException as err:
            _error(f"{prefix}.{name}", err)
            raise
        finally:
            _local.in_store = False
            took = time.perf_counter() - start
            op = f"{prefix}.{name}"
            if name == "log_batch" and (kwargs.get("metrics") or args[2:3] and args[2]):
                op = "epoch_log"
            calls.setdefault(op, []).append([took, took])
            if frames:
                frames[-1] += took
    return timed


def _wrap_class(cls, names, prefix):
    for name in names:
        if name in vars(cls):
            setattr(cls, name, _store(prefix, name, vars(cls)[name]))


def install():
    """Wrap the operations and the stores' methods in this process (once)."""
    import importlib

    import optuna

    if getattr(install, "done", False):
        return
    install.done = True
    for op, (module, cls, name) in OPS.items():
        owner = importlib.import_module(module)
        owner = getattr(owner, cls) if cls else owner
        setattr(owner, name, _op(op, getattr(owner, name)))
    methods = [n for n in dir(optuna.storages.BaseStorage) if not n.startswith("_")]
    _wrap_class(optuna.storages.RDBStorage, [*methods, "record_heartbeat"], "optuna")
    try:
        from optuna.storages import GrpcStorageProxy
        _wrap_class(GrpcStorageProxy, [*methods, "record_heartbeat"], "optuna")
    except ImportError:
        pass
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    for cls in (SqlAlchemyStore, RestStore):
        _wrap_class(cls, MLFLOW, "mlflow")


def dump(path, **extra):
    """Write this process's calls, errors and asked trials (and `extra`) to `path`."""
    with open(path, "w") as out:
        json.dump({"calls": calls, "errors": errors, "asked": asked, **extra}, out)
