"""`keras-relu ui` refusals, and the artifacts a search leaves on its MLflow runs."""

import socket

from mlflow import MlflowClient

from search.artifacts import SEARCH_PLOTS, TRIALS_CSV
from search.engines import kerastuner as kte
from search.cli import main
from search.space import default_space
from search.child_run import HISTORY_PLOT as TRIAL_PLOT
from search.child_run import UNIT_PLOT
from search.tracking import default_tracking_uri


def test_ui_on_a_taken_port_says_so_in_one_line_and_exits_2(workdir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"port {port}" in err[0] and "in use" in err[0], err


def test_ui_without_a_store_exits_2(workdir, capsys):
    assert main(["ui", "--port", "50999", "--tracking-uri",
                 f"sqlite:///{workdir}/none/mlflow.db"]) == 2
    assert "no MLflow store" in capsys.readouterr().err


def test_search_runs_carry_the_plots_and_the_trials_csv(workdir):
    assert main(["search", "--trials", "3", "--epochs", "1", "--fix", "depth=1"]) == 0
    client = MlflowClient(default_tracking_uri(workdir))
    experiment = client.get_experiment_by_name("digits")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r is not parent]
    assert len(children) == 3
    for run in children:
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {TRIAL_PLOT, UNIT_PLOT}
    artifacts = {a.path: a for a in client.list_artifacts(parent.info.run_id)}
    assert {TRIALS_CSV, SEARCH_PLOTS} <= set(artifacts)
    folder = client.download_artifacts(parent.info.run_id, "", str(workdir / "got"))
    csv_lines = open(f"{folder}/{TRIALS_CSV}").read().strip().splitlines()
    assert len(csv_lines) == 4 and "params_activation" in csv_lines[0]
    page = open(f"{folder}/{SEARCH_PLOTS}").read()
    assert "Optimisation history" in page and "Parallel coordinate" in page
    assert page.count("plotly.js v") <= 2  # plotly.js inlined once, not per plot
    child = client.download_artifacts(children[0].info.run_id, TRIAL_PLOT, str(workdir / "png"))
    assert open(child, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_kerastuner_trials_give_the_same_csv_as_optuna():
    space = default_space().with_cli(["depth=2", "width=32"])
    config = {"activation": "relu", "initializer": "he_normal", "batch_norm": False,
              "dropout": 0.1, "clipping": "none", "schedule": "constant",
              "learning_rate": 1e-3, "optimizer": "adam", "depth": 2, "width": 32}
    done, failed = kte.State.COMPLETE, kte.State.FAIL
    records = [
        kte.TrialRecord(0, done, {"config": config, "value": 0.9, "val_accuracy": 0.9,
                                  "dead_fraction": 0.1, "run_id": "abc"}),
        kte.TrialRecord(1, failed, {"config": {**config, "activation": "elu"},
                                    "reason": "loss became nan"}),
        kte.TrialRecord(2, done, {"config": {**config, "dropout": 0.3}, "value": 0.8,
                                  "val_accuracy": 0.8, "dead_fraction": 0.0}),
    ]

    class Study:  # what as_optuna_study reads of a KerasTuner study
        trials, direction = records, "maximize"

    Study.space = space
    study = kte.as_optuna_study(Study())
    frame = study.trials_dataframe()
    assert list(frame["number"]) == [0, 1, 2]
    assert list(frame["state"]) == ["COMPLETE", "FAIL", "COMPLETE"]
    assert list(frame["params_activation"]) == ["relu", "elu", "relu"]
    assert frame["value"].iloc[0] == 0.9 and frame["user_attrs_run_id"].iloc[0] == "abc"
    assert study.best_trial.number == 0
    assert "params_depth" not in frame  # fixed: not a searched parameter
