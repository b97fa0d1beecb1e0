"""MLflow tracking: one experiment per study, a parent run per search, a child run per trial.

Runs are linked by an explicit `mlflow.parentRunId` tag (never the thread-local active
run stack) and written with `MlflowClient`, so any engine or thread can log a trial
(`search.child_run`). Every write is one `log_batch` (MLflow splits it at its limits);
with `MLFLOW_ENABLE_ASYNC_LOGGING=true` MLflow queues it, and a run is closed only once
its writes landed. A tracking server that goes away mid-search is `StoreLost`: one line
in about 15 s (`server_defaults`), not MLflow's minutes of retries.
"""

import contextlib
import json
import os
import pathlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from search.child_run import PROCESS_TAG, ChildRun
from search.runtime import process_id
from search.secrets import mask_text
from search.store_health import StoreLost

MLRUNS = "mlruns"
_ACTIVE = None  # the Tracker this process opened last (see active_tracker)
LOST_PROBE = 5  # seconds to tell a lost tracking store from a failed write
# For a tracking server, unless set: MLflow's 7 retries with a factor 2 take ~4 minutes a
# call; 4 retries 0, 2, 4 and 8 s apart take ~15 s. MLflow prints no "View run" link per
# closed run (the search says where its runs are).
SERVER_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
                   "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",  # seconds for an answer (MLflow: 120)
                   "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def active_tracker():
    """The Tracker this process opened last, or None: for code that MLflow runs must reach
    but that gets no tracker passed (Optuna's heartbeat callback)."""
    return _ACTIVE


def default_tracking_uri(cwd=None):
    """SQLite under ./mlruns: MLflow 3.17's own default backend, kept in one folder."""
    folder = pathlib.Path(cwd or os.getcwd()).resolve() / MLRUNS
    return f"sqlite:///{folder / 'mlflow.db'}"


def resolve_tracking_uri(uri=None):
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the default under ./mlruns."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def mlflow_uri(uri=None):
    """The resolved tracking URI as MLflow is given it (SQL URLs with the driver that is
    installed, see `search.stores.sqlalchemy_url`); `uri` itself stays what is shown."""
    from search.stores import sqlalchemy_url

    return sqlalchemy_url(resolve_tracking_uri(uri))


def server_defaults(uri):
    """For a tracking server (`http(s)://`): `SERVER_DEFAULTS` in this process's
    environment (and its workers'), each only where the user did not set it."""
    if uri.startswith(("http://", "https://")):
        for name, value in SERVER_DEFAULTS.items():
            os.environ.setdefault(name, value)


def ui_command(uri):
    """How to open the runs: a URL for a tracking server, else the `keras-relu ui` command."""
    if uri.startswith(("http://", "https://")):
        return f"open {mask_text(uri)} in a browser"
    if uri == default_tracking_uri():
        return "keras-relu ui"
    return f"keras-relu ui --tracking-uri {mask_text(uri)}"


def _numbers(values):
    """The entries of `values` that are numbers (Python, NumPy or 0-d tensors), as floats."""
    numbers = {}
    for key, value in values.items():
        try:
            numbers[key] = float(value)
        except (TypeError, ValueError):
            pass
    return numbers


def _text(value):
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)


class Tracker:
    """The MLflow side of one search invocation."""

    def __init__(self, uri, experiment_name):
        import logging

        import mlflow
        from mlflow import MlflowClient

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # schema set-up lines
        # a failed asynchronous write: raised by close_run / flush, not logged as well
        logging.getLogger("mlflow.utils.async_logging.async_logging_queue").setLevel(
            logging.CRITICAL)

        from search import secrets, stores

        secrets.guard_output(uri)  # before MLflow prints anything about this store
        server_defaults(uri)
        self._entities = mlflow.entities
        self.uri, self.experiment_name = uri, experiment_name
        if uri.startswith("sqlite:///"):
            pathlib.Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        with stores.first_use_lock(uri):  # a concurrent first search creates the schema too
            self.client = MlflowClient(tracking_uri=mlflow_uri(uri))
            self.client.search_experiments(max_results=1)  # the store made (and migrated) here
            self.experiment_id = self._experiment(experiment_name)
        self.parent_id = None
        self.child_tags = {}  # tags of every child run, e.g. the worker and its device
        self._writer, self._pending = None, []
        self._operations, self._lock = {}, threading.Lock()  # run id -> MLflow's async writes
        self.lost = None  # the line that says the store went away, once it did
        global _ACTIVE
        _ACTIVE = self

    def _experiment(self, name):
        """The id of experiment `name`, created if missing (by us or a concurrent search)."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        artifacts = None  # a tracking server decides; a local database keeps them beside it
        if self.uri.startswith("sqlite:///"):  # (MLflow's default is ./mlruns wherever one runs)
            db = pathlib.Path(self.uri[len("sqlite:///"):]).resolve()
            artifacts = (db.parent / "artifacts").as_uri()
        try:
            return self.client.create_experiment(name, artifacts)
        except MlflowException:  # RESOURCE_ALREADY_EXISTS: another search made it just now
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def start_parent(self, params, tags, name=None):
        tags = {PROCESS_TAG: process_id(), **tags}  # a resume closes it if this process dies
        run = self.client.create_run(
            self.experiment_id, tags={k: _text(v) for k, v in tags.items()},
            run_name=name or f"search-{time.strftime('%Y%m%d-%H%M%S')}",
        )
        self.parent_id = run.info.run_id
        self.log(self.parent_id, params=params)
        return self.parent_id

    def adopt_parent(self, run_id):
        """Log children under the existing run `run_id`; False if this store lacks it."""
        from mlflow.exceptions import MlflowException

        if not run_id:
            return False
        try:
            self.parent_id = self.client.get_run(run_id).info.run_id
        except MlflowException:  # a worker on another tracking store
            return False
        return True

    def child_tag(self, number, key):
        """Tag `key` of the latest child run of trial `number` under the parent (or None)."""
        self.flush()
        query = (f"tags.trial_number = '{number}' and "
                 f"tags.`mlflow.parentRunId` = '{self.parent_id}'")
        for run in self.client.search_runs([self.experiment_id], filter_string=query,
                                           order_by=["attributes.start_time DESC"]):
            if run.data.tags.get(key):
                return run.data.tags[key]
        return None

    def close_trial_run(self, number, reason, status="FAILED", state="failed"):
        """Close the still running child run of trial `number` under the parent run."""
        query = (f"tags.trial_number = '{number}' and "
                 f"tags.`mlflow.parentRunId` = '{self.parent_id}'")
        for run in self.client.search_runs([self.experiment_id], filter_string=query):
            if run.info.status == "RUNNING":
                self.close_run(run.info.run_id, status, state, reason)

    def close_run(self, run_id, status, state, reason=""):
        """End run `run_id` with MLflow `status`, and our `state` and `reason` tags, once
        its asynchronous writes landed."""
        self.log(run_id, tags={"state": state, **({"reason": reason[:5000]} if reason else {})})
        self._wait(run_id)
        self.client.set_terminated(run_id, status)

    def finish_parent(self, status, best=None, summary=None):
        """Wait for the trials' writes, then close the parent run with the best trial
        (`best` = {"metrics": {...}, "params": {...}}) and the summary table; nothing
        if the store went away (a resume closes it, see `search.recovery`)."""
        try:
            self.flush()
        finally:
            if not self.lost:
                if best:
                    self.log(self.parent_id, metrics=best.get("metrics", {}),
                             params={f"best.{k}": v for k, v in best.get("params", {}).items()})
                if summary:
                    self.client.log_text(self.parent_id, summary, "best_trials.txt")
                self._wait(self.parent_id)
                self.client.set_terminated(self.parent_id, status)

    def start_child(self, trial_number, engine, params, tags=None):
        """A child run of the parent; everything it logs is written in the background."""
        return ChildRun(self, trial_number, engine, params, tags)

    def log(self, run_id, metrics=None, params=None, tags=None, step=0):
        """One `log_batch` call (MLflow splits it at 1000 metrics, 100 params or 100 tags
        a request): numeric metrics at `step`, params and tags as text. Asynchronous
        logging (MLflow's `MLFLOW_ENABLE_ASYNC_LOGGING`) queues it; `close_run` and
        `flush` wait for it."""
        entities, now = self._entities, int(time.time() * 1000)
        operations = self.client.log_batch(
            run_id,
            metrics=[entities.Metric(k, v, now, step) for k, v in _numbers(metrics or {}).items()],
            params=[entities.Param(k, _text(v)) for k, v in (params or {}).items()],
            tags=[entities.RunTag(k, _text(v)) for k, v in (tags or {}).items()],
        )
        if operations is not None:  # MLflow's RunOperations: asynchronous
            with self._lock:
                self._operations.setdefault(run_id, []).append(operations)

    def _wait(self, run_id=None):
        """Wait for MLflow's asynchronous writes to run `run_id` (None: every run)."""
        with self._lock:
            runs = list(self._operations) if run_id is None else [run_id]
            waiting = [op for run in runs for op in self._operations.pop(run, [])]
        for operations in waiting:
            operations.wait()

    def submit(self, fn, *args, **kwargs):
        """Run `fn` in the tracker's one writer thread (in order), so training never waits
        for MLflow; a write that failed earlier is raised here (`StoreLost` once the
        store went away: then nothing more is written)."""
        if self.lost:
            raise StoreLost(self.lost)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writer")
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            future.result()
        future = self._writer.submit(self._guarded, fn, args, kwargs)
        self._pending.append(future)
        return future

    def _guarded(self, fn, args, kwargs):
        with self.guarded():
            return fn(*args, **kwargs)

    @contextlib.contextmanager
    def guarded(self):
        """For MLflow calls: `StoreLost` if they failed because the store went away."""
        if self.lost:
            raise StoreLost(self.lost)
        try:
            yield
        except Exception:
            self.check_store()
            raise

    def check_store(self):
        """Raise `StoreLost` (one line naming the store) if the tracking store stopped
        answering; from then on the tracker writes nothing."""
        from search import UsageError, stores

        if not self.lost:
            try:
                stores.check_tracking_store(self.uri, timeout=LOST_PROBE)
                return
            except UsageError as err:
                self.lost = f"{err} (mid-search; resume once it answers again)"
        raise StoreLost(self.lost) from None

    def flush(self):
        """Wait for every background write, MLflow's asynchronous ones included; raise
        the first that failed."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()
        if self.lost:
            raise StoreLost(self.lost)
        try:
            self._wait()
        except Exception:
            self.check_store()
            raise
