"""One trial's MLflow child run, written in the tracker's writer thread.

Every write is one `Tracker.log` call (one `log_batch`): the run's params when it is made,
an epoch's metrics (the per-layer keys included) at that epoch's step, its tags when it
ends. Training never waits for MLflow; `finish` closes the run after its pending writes
(MLflow's asynchronous ones included, see `search.tracking`).
"""

import logging
import os
import tempfile

from search.runtime import process_id
from search.stores import sqlalchemy_url

STATUS = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED", "interrupted": "KILLED"}
PROCESS_TAG = "process"  # HOST:PID of the process that created a run
HISTORY_PLOT = "dead_fraction.png"
UNIT_PLOT = "unit_activity.png"
_log = logging.getLogger("search.tracking")


def _signature(infer_signature, model, sample):
    """The model's MLflow signature from `sample` inputs and its output shape (a predict
    here would retrace every trial's new model on TensorFlow)."""
    import numpy as np

    if len(model.outputs) != 1:
        return None
    shape = (len(sample), *model.outputs[0].shape[1:])
    return infer_signature(sample, np.zeros(shape, "float32"))


class ChildRun:
    """One trial's run: created, fed per-epoch metrics and closed in the writer thread;
    `tags` are added to the run's first tags (no write of their own)."""

    def __init__(self, tracker, trial_number, engine, params, tags=None):
        self.tracker = tracker
        tags = {PROCESS_TAG: process_id(), **tracker.child_tags, **(tags or {}),
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
        """The epoch's metrics, every key in one batch at step `epoch`."""
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

        with self.tracker.guarded():
            mlflow.set_tracking_uri(sqlalchemy_url(self.tracker.uri))  # where Model.log writes,
            mlflow.set_experiment(experiment_id=self.tracker.experiment_id)  # in which one
            # mlflow.keras.log_model with an explicit run: the active-run stack is per
            # thread. Given requirements spare MLflow inferring them by reloading the model.
            info = Model.log(None, name="model", flavor=mlflow.keras, model=model,
                             run_id=self.run_id,
                             signature=_signature(infer_signature, model, sample),
                             pip_requirements=[f"keras=={keras.__version__}", "keras-relu"])
        self.tracker.submit(lambda: self.tracker.log(self.run_id, tags={"model_uri":
                                                                       info.model_uri}))
        return info.model_uri

    def finish(self, state, reason=""):
        """Close the run in the writer thread, after its pending writes: `state`
        (complete, pruned, failed or interrupted, the last one's status wins) and
        `reason` as tags."""
        self.tracker.submit(lambda: self.tracker.close_run(self.run_id, STATUS.get(state, "FAILED"),
                                                           state, reason))
