"""Optuna's storages as the search opens them: a journal file, a database (with
Optuna's heartbeat, and a retry of a trial whose worker died; a few pooled connections
per process), or a `keras-relu storage-proxy` at `grpc://HOST:PORT` (Optuna's
`GrpcStorageProxy`, whose heartbeat is `search.engines.optuna_heartbeat`'s). A database's
schema is made by one process at a time (`search.stores.first_use_lock`), never in the
MLflow store's database.
"""

import pathlib
import warnings

import optuna

from search import UsageError, stores
from search.names import DEFAULT_STORAGE
from search.secrets import mask_text

HEARTBEAT = {"heartbeat_interval": 3, "grace_period": 10}  # seconds; RDB storages only
MAX_RETRY = 3  # a trial whose worker died is retried at most this often
# A worker's connections: at most 3 (the heartbeat thread takes one of its own); a dropped
# connection is noticed before use, not mid-trial.
POOL = {"pool_size": 2, "max_overflow": 1, "pool_pre_ping": True}


def open_storage(url=None):
    """The storage at `url`: an SQLAlchemy URL, or a journal file path (default one)."""
    target = url or DEFAULT_STORAGE
    try:
        if "://" not in target:
            from optuna.storages.journal import JournalFileBackend

            path = pathlib.Path(target).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            # Absolute: the lock is a symlink to this path, and Optuna breaks a stale lock
            # (holder killed) by stat-ing through it; a relative target dangles and the
            # waiters spin forever.
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if target.startswith("grpc://"):
            return open_proxy(target)
        return open_database(target, heartbeat_stale_trial_callback=retry_callback(),
                             **HEARTBEAT)
    except UsageError:
        raise
    except Exception as err:
        cause = getattr(err, "orig", None) or err
        lines = str(cause).strip().splitlines()
        raise UsageError(
            f"cannot open storage {mask_text(target)}: {lines[0] if lines else type(err).__name__}"
        ) from None


def open_database(url, pool=None, **options):
    """Optuna's `RDBStorage` at `url` (schema made or checked once, one process at a time),
    with `pool` (default `POOL`) on a database server; `options` go to `RDBStorage`."""
    server = url.startswith(stores.SQL_SCHEMES)
    engine = {"connect_args": {"connect_timeout": 10} if url.startswith(("postgresql", "mysql"))
              else {}, **((POOL if pool is None else pool) if server else {})}
    with warnings.catch_warnings(), stores.first_use_lock(url):  # one schema maker
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if server:
            stores.check_schema_owner(url, "optuna")  # not the MLflow store's
        return optuna.storages.RDBStorage(stores.sqlalchemy_url(url), engine_kwargs=engine,
                                          **options)  # heartbeat and retry: "experimental"


class ProxyStorage(optuna.storages.GrpcStorageProxy):
    """Optuna's `GrpcStorageProxy` that knows its URL, to name it when it goes away."""

    def __init__(self, url):
        host, port = stores.proxy_address(url)
        self.url = url
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(host=host, port=port)


def open_proxy(url):
    """A `ProxyStorage` for `grpc://HOST:PORT`, once a handshake succeeded."""
    stores.check_proxy(url)
    return ProxyStorage(url)


def is_proxy(storage):
    """Whether `storage` is reached through a storage proxy (no Optuna heartbeat there)."""
    return isinstance(storage, optuna.storages.GrpcStorageProxy)


def store_lost(storage, err):
    """A `StoreLost` naming the storage proxy if `err` says it stopped answering, else
    None."""
    import grpc

    from search.store_health import StoreLost

    gone = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
            grpc.StatusCode.DEADLINE_EXCEEDED)
    while err is not None and not isinstance(err, grpc.RpcError):  # Optuna's tell may
        err = err.__cause__ or err.__context__  # fail on its own after the lost call
    if not (is_proxy(storage) and err is not None and err.code() in gone):
        return None
    url = getattr(storage, "url", "grpc://")
    return StoreLost(f"the storage proxy {url} stopped answering ({err.code().name}); "
                     "resume once it is back")


DIED_WITH = "keras_relu:died_with"  # trial system attribute: the worker whose death failed it
OWN_ATTRS = "keras_relu:"  # the prefix of this project's trial system attributes


class _Retry(getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
             or optuna.storages.RetryFailedTrialCallback):  # the new name since Optuna 4.9
    """Optuna's retry of a failed trial, without the dead attempt's reason, worker, run,
    heartbeat and death (its config and its control label kept)."""

    def __call__(self, study, trial):
        import copy

        from search import recovery

        recovery.on_stale_trial(study, trial)  # close the dead attempt's MLflow run
        trial = copy.copy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items()
                            if k in ("config", "control")}
        trial.system_attrs = {k: v for k, v in trial.system_attrs.items()
                              if not k.startswith(OWN_ATTRS)}
        super().__call__(study, trial)


def mark_died(storage, trial, reason):
    """Record on the RUNNING `trial` why it stops and `DIED_WITH` its worker."""
    storage.set_trial_user_attr(trial._trial_id, "reason", reason)
    storage.set_trial_system_attr(trial._trial_id, DIED_WITH, trial.user_attrs.get("worker"))


def fail_and_retry(study, trial, reason):
    """Fail the RUNNING `trial` (a FrozenTrial) whose worker died or went silent, with
    its `reason` and `DIED_WITH` that worker (a dead worker's quota does not count it),
    and re-queue it; False if it ended meanwhile (another process was first)."""
    storage, trial_id = study._storage, trial._trial_id
    try:
        mark_died(storage, trial, reason)
        if not storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    retry_callback()(study, storage.get_trial(trial_id))
    return True


def retry_callback():
    """Re-queues a trial whose worker died (same params; `failed_trial` system attribute)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _Retry(max_retry=MAX_RETRY)
