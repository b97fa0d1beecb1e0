"""The new cures in the search and in `compare`: ReDo, RAI and residual blocks as
dimensions, pruning on the dead fraction on both engines, the per-trial unit picture."""

import csv

import optuna
import pytest
from conftest import BACKEND, mlflow_runs, search_logic

from search.cli import main
from search.engines import optuna as engine
from search.space import default_space
from search.child_run import UNIT_PLOT
from search.tracking import default_tracking_uri

# Where ReLU units die fast (measured on TensorFlow: 39-47% dead after the first epoch,
# 44-61% after four): 20 x Dense(16), Adam at 3e-2, no cure.
DYING = [f"--fix={f}" for f in (
    "activation=relu", "depth=20", "width=16", "learning_rate=0.03", "optimizer=adam",
    "batch_norm=false", "residual=false", "recycle=none", "initializer=he_normal",
    "clipping=none", "schedule=constant", "dropout=0")]


def test_the_default_space_has_the_new_cures():
    space = default_space()
    assert space["recycle"].values == ("none", "redo")
    assert space["recycle_every"].when == ("recycle", ("redo",))
    assert space["residual"].values == (False, True) and "rai" in space["initializer"].values
    assert (space["depth"].low, space["depth"].high, space["width"].low) == (1, 12, 16)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="pruning thresholds measured on "
                                                    "TensorFlow's initialisation")
@pytest.mark.parametrize("engine_flags", [[], ["--engine", "kerastuner"]])
def test_prune_dead_above_prunes_dying_trials_that_complete_without_it(workdir, engine_flags):
    base = ["search", *engine_flags, *DYING, "--trials", "3", "--epochs", "3"]
    assert main([*base, "--prune-dead-above", "0.4", "--study-name", "pruned"]) == 0
    uri = default_tracking_uri(workdir)
    _, _, children = mlflow_runs(uri, "pruned")
    pruned = {int(r.data.tags["trial_number"]): r for r in children
              if r.data.tags["state"] == "pruned"}
    assert pruned, [r.data.tags for r in children]
    for run in pruned.values():
        assert run.info.status == "KILLED"
        assert "dead fraction" in run.data.tags["reason"] and "> 0.4 at epoch" in run.data.tags["reason"]
    if not engine_flags:
        study = optuna.load_study(study_name="pruned", storage=engine.open_storage())
        for number in pruned:
            trial = study.trials[number]
            assert trial.state == optuna.trial.TrialState.PRUNED
            assert "dead fraction" in trial.user_attrs["reason"]

    assert main([*base, "--study-name", "kept"]) == 0  # the same trials, no threshold
    _, _, children = mlflow_runs(uri, "kept")
    states = {int(r.data.tags["trial_number"]): r.data.tags["state"] for r in children}
    assert all(states[n] == "complete" for n in pruned), states


@search_logic("tensorflow")
def test_a_trial_with_redo_and_rai_logs_recycles_and_the_unit_picture(workdir):
    # recycling is searched only without skip connections (residual=false)
    cures = ["recycle=redo", "recycle_every=1", "initializer=rai", "residual=false",
             "depth=3", "width=16", "batch_norm=false"]
    assert main(["search", "--trials", "1", "--epochs", "2",
                 *(f"--fix={c}" for c in cures)]) == 0
    client, _, (run,) = mlflow_runs(default_tracking_uri(workdir), "digits")
    assert run.data.params["recycle"] == "redo" and run.data.params["initializer"] == "rai"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "recycled")]
    assert steps == [0, 1]
    assert UNIT_PLOT in {a.path for a in client.list_artifacts(run.info.run_id)}


@search_logic("tensorflow")
def test_compare_rows_are_cure_combinations_on_the_deep_narrow_scenario(workdir):
    assert main(["compare", "--scenario", "digits-deep-narrow", "--activations", "relu",
                 "--cures", "none,redo,rai,residual", "--seeds", "1", "--epochs", "1"]) == 0
    with open(workdir / "mlruns" / "compare" / "digits-deep-narrow.csv") as handle:
        rows = [r["variant"] for r in csv.DictReader(handle)]
    assert rows == ["relu", "relu+redo", "relu+rai", "relu+residual"]
    _, _, children = mlflow_runs(default_tracking_uri(workdir), "compare-digits-deep-narrow")
    by_variant = {r.data.tags["variant"]: r.data.params for r in children}
    assert by_variant["relu+redo"]["recycle"] == "redo"
    assert by_variant["relu+rai"]["initializer"] == "rai"
    assert by_variant["relu+residual"]["residual"] == "True"
    assert by_variant["relu"]["depth"] == "20" and by_variant["relu"]["width"] == "16"


def test_an_unknown_cure_is_one_line(workdir, capsys):
    assert main(["compare", "--cures", "none,magic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown cure magic" in err


@search_logic("tensorflow")
def test_a_new_default_study_starts_with_the_control_trials(workdir, capsys):
    from search.space import CONTROLS

    assert main(["search", "--trials", "2", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "Control trials" in out and "relu+residual" not in out  # only two ran
    study = optuna.load_study(study_name="digits", storage=engine.open_storage())
    ran = [t for t in study.trials if t.state.is_finished()]  # 3 more wait for a resume
    assert [t.user_attrs["config"] for t in ran] == [CONTROLS["relu"], CONTROLS["sugar_bsilu"]]
    assert [t.user_attrs["control"] for t in ran] == ["relu", "sugar_bsilu"]
    _, _, children = mlflow_runs(default_tracking_uri(workdir), "digits")
    assert all("dead_fraction/activation_11" in r.data.metrics for r in children)

    assert main(["search", "--trials", "1", "--epochs", "1", "--no-controls",
                 "--study-name", "free"]) == 0
    assert "Control trials" not in capsys.readouterr().out
    study = optuna.load_study(study_name="free", storage=engine.open_storage())
    assert "control" not in study.trials[0].user_attrs
