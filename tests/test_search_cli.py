"""`keras-relu search` end to end: MLflow runs read back through MlflowClient, resume, NaN."""

import optuna
from conftest import mlflow_runs

from search.cli import main
from search.engines import optuna as engine
from search.tracking import default_tracking_uri

EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
              "dead_fraction", "dormant_fraction", "zero_fraction", "revived")


def test_search_logs_parent_and_children_and_resumes(workdir, capsys):
    assert main(["search", "--trials", "2", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    uri = default_tracking_uri(workdir)
    assert "MLflow runs: keras-relu ui\n" in out
    assert "activation" in out and "val_accuracy" in out and "dead_fraction" in out

    client, parents, children = mlflow_runs(uri, "digits")
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert "best_val_accuracy" in parent.data.metrics
    assert any(key.startswith("best.") for key in parent.data.params)
    study = optuna.load_study(study_name="digits", storage=engine.open_storage())
    finished = [t for t in study.trials if t.state.is_finished()]  # controls wait too
    configs = {t.number: t.user_attrs["config"] for t in finished}
    for run in children:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["engine"] == "optuna" and tags["state"] == "complete"
        config = configs[int(tags["trial_number"])]
        assert {k: str(v) for k, v in config.items()}.items() <= run.data.params.items()
        assert run.data.params["epochs"] == "2"
        per_layer = [k for k in run.data.metrics if k.startswith("dead_fraction/")]
        assert per_layer, run.data.metrics.keys()
        for key in (*EPOCH_KEYS, *per_layer):
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == [0, 1], (key, steps)

    # The same command again resumes the study, with new configurations.
    assert main(["search", "--trials", "1", "--epochs", "2"]) == 0
    study = optuna.load_study(study_name="digits", storage=engine.open_storage())
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 3
    assert finished[2].user_attrs["config"] != finished[0].user_attrs["config"]
    _, parents, children = mlflow_runs(uri, "digits")
    assert len(parents) == 2 and len(children) == 3


def test_nan_trials_are_recorded_failed_and_the_search_finishes(workdir, capsys):
    uri = f"sqlite:///{workdir}/elsewhere/mlflow.db"
    code = main(["search", "--trials", "2", "--epochs", "1", "--study-name", "nan",
                 "--tracking-uri", uri, "--fix", "learning_rate=1e30", "--fix", "clipping=none",
                 "--fix", "schedule=constant", "--fix", "batch_norm=false"])
    assert code == 0
    assert "no complete trial" in capsys.readouterr().out
    study = optuna.load_study(study_name="nan", storage=engine.open_storage())
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert all("loss became nan" in t.user_attrs["reason"] for t in study.trials)
    _, parents, children = mlflow_runs(uri, "nan")
    assert parents[0].info.status == "FINISHED" and len(children) == 2
    for run in children:
        assert run.info.status == "FAILED"
        assert run.data.tags["state"] == "failed"
        assert "loss became nan" in run.data.tags["reason"]
        assert run.data.params["learning_rate"] == "1e+30"
    # Artifacts live beside that database, not in ./mlruns of wherever the search ran.
    beside = (workdir / "elsewhere" / "artifacts").resolve().as_uri()
    assert all(r.info.artifact_uri.startswith(beside) for r in parents + children)
    assert not [p.name for p in (workdir / "mlruns").iterdir() if p.name.isdigit()]
