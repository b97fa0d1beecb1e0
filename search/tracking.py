"""MLflow tracking: one experiment per study, a parent run per search, a child run per trial.

Runs are linked by an explicit `mlflow.parentRunId` tag (never the thread-local active
run stack) and written with `MlflowClient`, so any engine or thread can log a trial.
"""

import json
import logging
import os
import pathlib
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from search.runtime import process_id
from search.secrets import mask_text

MLRUNS = "mlruns"
HISTORY_PLOT = "dead_fraction.png"
UNIT_PLOT = "unit_activity.png"
_log = logging.getLogger("search.tracking")
STATUS = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED", "interrupted": "KILLED"}
PROCESS_TAG = "process"  # HOST:PID of the process that created a run
_ACTIVE = None  # the Tracker this process opened last (see active_tracker)


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

        from search import secrets, stores

        secrets.guard_output(uri)  # before MLflow prints anything about this store
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
        """End run `run_id` with MLflow `status`, and our `state` and `reason` tags."""
        self.log(run_id, tags={"state": state, **({"reason": reason[:5000]} if reason else {})})
        self.client.set_terminated(run_id, status)

    def finish_parent(self, status, best=None, summary=None):
        """Wait for the trials' writes, then close the parent run with the best trial
        (`best` = {"metrics": {...}, "params": {...}}) and the summary table."""
        try:
            self.flush()
        finally:
            if best:
                self.log(self.parent_id, metrics=best.get("metrics", {}),
                         params={f"best.{k}": v for k, v in best.get("params", {}).items()})
            if summary:
                self.client.log_text(self.parent_id, summary, "best_trials.txt")
            self.client.set_terminated(self.parent_id, status)

    def start_child(self, trial_number, engine, params):
        """A child run of the parent; everything it logs is written in the background."""
        return ChildRun(self, trial_number, engine, params)

    def log(self, run_id, metrics=None, params=None, tags=None, step=0):
        """One `log_batch` call: numeric metrics at `step`, params and tags as text."""
        entities, now = self._entities, int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[entities.Metric(k, v, now, step) for k, v in _numbers(metrics or {}).items()],
            params=[entities.Param(k, _text(v)) for k, v in (params or {}).items()],
            tags=[entities.RunTag(k, _text(v)) for k, v in (tags or {}).items()],
        )

    def submit(self, fn, *args, **kwargs):
        """Run `fn` in the tracker's one writer thread (in order), so training never waits
        for MLflow; a write that failed earlier is raised here."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writer")
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            future.result()
        future = self._writer.submit(fn, *args, **kwargs)
        self._pending.append(future)
        return future

    def flush(self):
        """Wait for every background write; raise the first that failed."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()


def _signature(infer_signature, model, sample):
    """The model's MLflow signature from `sample` inputs and its output shape (a predict
    here would retrace every trial's new model on TensorFlow)."""
    import numpy as np

    if len(model.outputs) != 1:
        return None
    shape = (len(sample), *model.outputs[0].shape[1:])
    return infer_signature(sample, np.zeros(shape, "float32"))


class ChildRun:
    """One trial's run: created, fed per-epoch metrics and closed in the writer thread."""

    def __init__(self, tracker, trial_number, engine, params):
        self.tracker = tracker
        tags = {PROCESS_TAG: process_id(), **tracker.child_tags,
                "mlflow.parentRunId": tracker.parent_id,
                "engine": engine, "trial_number": str(trial_number), "state": "running"}
        self._run_id = tracker.submit(self._create, tags, f"trial-{trial_number}", params)

    def _create(self, tags, name, params):
        client = self.tracker.client
        run_id = client.create_run(self.tracker.experiment_id, tags=tags, run_name=name).info.run_id
        self.tracker.log(run_id, params=params)
        return run_id

    @property
    def run_id(self):
        return self._run_id.result()

    def log_epoch(self, epoch, logs):
        self.tracker.submit(lambda: self.tracker.log(self.run_id, metrics=logs, step=epoch))

    def log(self, metrics=None, tags=None):
        """Metrics (at step 0) and tags, in the background."""
        self.tracker.submit(lambda: self.tracker.log(self.run_id, metrics=metrics, tags=tags))

    def log_dict(self, data, name):
        """A JSON artifact `name`, in the background."""
        self.tracker.submit(lambda: self.tracker.client.log_dict(self.run_id, data, name))

    def log_plots(self, monitor, redo=None):
        """Queue the trial's pictures: the dead fraction per layer over epochs
        (`HISTORY_PLOT`) and every unit's tau-dormant score over the checks (`UNIT_PLOT`),
        drawn in the writer thread so training does not wait for matplotlib."""
        if not monitor.checks:
            return
        import keras_relu

        self.tracker.submit(self._write_plot, HISTORY_PLOT,
                            lambda path: keras_relu.plot_neuron_history(monitor, path))
        self.tracker.submit(self._write_plot, UNIT_PLOT,
                            lambda path: keras_relu.plot_unit_activity(monitor, path, redo))

    def _write_plot(self, name, draw):
        try:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, name)
                draw(path)
                self.tracker.client.log_artifact(self.run_id, path)
        except Exception as err:  # a missing plot must not fail the trial
            _log.warning("no %s for run %s: %s", name, self.run_id, err)

    def log_model(self, model, sample):
        """Log the fitted `model` to this run with MLflow's Keras flavour (a `.keras` file
        inside), its signature read off `sample` inputs; returns its `models:/m-...` URI,
        which `mlflow.keras.load_model` and `mlflow.register_model` take."""
        import keras
        import mlflow
        from mlflow.models import Model, infer_signature

        mlflow.set_tracking_uri(mlflow_uri(self.tracker.uri))  # where Model.log writes,
        mlflow.set_experiment(experiment_id=self.tracker.experiment_id)  # and in which one
        # mlflow.keras.log_model with an explicit run: the active-run stack is per thread.
        # Given requirements spare MLflow inferring them by reloading the model.
        info = Model.log(None, name="model", flavor=mlflow.keras, model=model,
                         run_id=self.run_id,
                         signature=_signature(infer_signature, model, sample),
                         pip_requirements=[f"keras=={keras.__version__}", "keras-relu"])
        self.tracker.submit(lambda: self.tracker.log(self.run_id, tags={"model_uri":
                                                                       info.model_uri}))
        return info.model_uri

    def finish(self, state, reason=""):
        """Close the run in the writer thread: `state` (complete, pruned, failed or
        interrupted, the last one's status wins) and `reason` as tags."""
        self.tracker.submit(lambda: self.tracker.close_run(self.run_id, STATUS.get(state, "FAILED"),
                                                           state, reason))
