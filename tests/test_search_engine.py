"""The Optuna engine through its API: median pruning, the Pareto front, the --backend flag."""

import os
import subprocess
import sys

import optuna
import pytest
from mlflow import MlflowClient

from conftest import BACKEND
from search import data as datasets
from search.engines import optuna as engine
from search.space import default_space
from search.tracking import Tracker
from search.trial import TrialSettings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["activation=relu", "initializer=he_normal", "batch_norm=false", "dropout=0",
         "clipping=none", "schedule=constant", "optimizer=adam", "depth=1", "width=32"]


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


def _space():
    return default_space().with_overrides(
        {"learning_rate": {"low": 1e-7, "high": 1e-1, "log": True}}).with_cli(SMALL)


def test_median_pruner_prunes_a_bad_trial_and_mlflow_says_so(tmp_path, digits):
    storage = engine.open_storage(str(tmp_path / "journal.log"))
    space = _space()
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = engine.open_study("prune", storage, "accuracy", space, "digits", pruner=pruner)
    study.enqueue_trial({"learning_rate": 1e-2})  # learns: the median to beat
    study.enqueue_trial({"learning_rate": 1e-7})  # barely moves: pruned after epoch 0
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "prune")
    tracker.start_parent({"engine": "optuna"}, {})
    engine.optimize(study, space, digits, TrialSettings(epochs=2, batch_size=128), tracker, n_trials=2)
    tracker.finish_parent("FINISHED")

    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert "pruned at epoch 0" in study.trials[1].user_attrs["reason"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(study.trials[1].user_attrs["run_id"])
    assert run.data.tags["state"] == "pruned" and run.info.status == "KILLED"
    assert "pruned at epoch 0" in run.data.tags["reason"]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0]


def test_pareto_objective_reports_the_front_without_pruning(tmp_path, digits):
    storage = engine.open_storage(f"sqlite:///{tmp_path}/optuna.db")
    space = default_space().with_cli(SMALL[1:], ["activation=relu,sugar_bsilu"])
    study = engine.open_study("front", storage, "pareto", space, "digits", seed=3,
                              pruner=engine.make_pruner("median", 1))
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
    engine.optimize(study, space, digits, TrialSettings(epochs=1, batch_size=128), n_trials=3)
    front = engine.best_trials(study)
    assert front and all(len(t.values) == 2 for t in front)
    assert all(0.0 <= t.values[1] <= 1.0 for t in front)  # the dead fraction, minimised


def test_backend_flag_takes_effect_before_keras_is_imported(tmp_path):
    other = "jax" if BACKEND != "jax" else "torch"
    env = dict(os.environ, KERAS_BACKEND=other, PYTHONPATH=ROOT)
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", "search", "--backend", BACKEND, "--trials", "1",
         "--epochs", "1", "--fix", "depth=1", "--fix", "width=16"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.params["backend"] == BACKEND
