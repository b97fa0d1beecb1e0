"""`keras-relu search --engine kerastuner`: the same space, trial runner and MLflow record
as the Optuna engine; the three tuners; resume; bad input. MLflow is read back through
MlflowClient, KerasTuner's state through its own oracle."""

import pytest
from conftest import search_logic
from mlflow import MlflowClient

import search.space
from search import names
from search.cli import main
from search.engines import kerastuner as kte
from search.space import Choice, Float, Int, Space, default_space
from search.tracking import default_tracking_uri

pytestmark = search_logic("torch")

# Tiny, fast trials; the conditional parents fixed so every trial has the same keys.
FIX = [f"--fix={f}" for f in ("depth=1", "width=16", "clipping=clipnorm",
                              "schedule=cosine_warmup", "optimizer=adam",
                              "residual=false", "recycle=none")]
FAST = ["--batch-size", "128", *FIX]
KT = ["search", "--engine", "kerastuner"]


def _runs(workdir, experiment="digits", engine=None):
    """(parents, children) of `experiment`, optionally of one engine, oldest first."""
    client = MlflowClient(default_tracking_uri(workdir))
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=500, order_by=["start_time ASC"])
    runs = [r for r in runs if engine is None or r.data.tags.get("engine") == engine]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _keys(children):
    return ({frozenset(r.data.params) for r in children},
            {frozenset(r.data.metrics) for r in children})


def _study(tuner, name, space=None):
    return kte.open_study(tuner, name, space or default_space(), "digits", 2)


def test_same_record_as_optuna_then_resume_continues(workdir, capsys):
    assert main(["search", "--trials", "1", "--epochs", "2", *FAST]) == 0
    assert main([*KT, "--tuner", "random", "--trials", "3", "--epochs", "2", *FAST]) == 0
    out = capsys.readouterr().out
    assert "val_accuracy" in out and "dead_fraction" in out and "3 new trials, 3 in all" in out

    _, optuna_children = _runs(workdir, engine="optuna")
    parents, children = _runs(workdir, engine="kerastuner")
    assert len(parents) == 1 and len(children) == 3
    assert parents[0].info.status == "FINISHED" and "best_val_accuracy" in parents[0].data.metrics
    (params,), (metrics,) = _keys(children)
    assert _keys(optuna_children) == ({params}, {metrics})
    assert any(k.startswith("dead_fraction/") for k in metrics), metrics
    assert {"clip_threshold", "warmup_fraction"} <= params and "momentum" not in params
    for run in children:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert tags["state"] == "complete" and tags["tuner"] == "random"
        assert tags["trial_id"] and int(tags["trial_number"]) == int(tags["trial_id"])
        history = MlflowClient(default_tracking_uri(workdir)).get_metric_history(
            run.info.run_id, "dead_fraction")
        assert sorted(m.step for m in history) == [0, 1]

    # The same study again: KerasTuner reloads its oracle and continues, no repetition.
    assert main([*KT, "--tuner", "random", "--trials", "1", "--epochs", "2", *FAST]) == 0
    assert "1 new trials, 4 in all" in capsys.readouterr().out
    oracle = _study("random", "digits", _fast_space()).tuner.oracle
    configs = [kte.config_of(_fast_space(), t.hyperparameters.values)
               for t in oracle.trials.values()]
    assert len(configs) == 4 and len({repr(sorted(c.items())) for c in configs}) == 4
    parents, children = _runs(workdir, engine="kerastuner")
    assert len(parents) == 2 and len(children) == 4
    assert sorted(int(r.data.tags["trial_id"]) for r in children) == [0, 1, 2, 3]


def _fast_space():
    return default_space().with_cli([f.partition("=")[2] for f in FIX])


def test_hyperband_rounds_are_tagged_apart(workdir, capsys):
    args = [*KT, "--tuner", "hyperband", "--trials", "4", "--epochs", "3", *FAST]
    assert main([*args, "--study-name", "hb"]) == 0
    _, children = _runs(workdir, "hb")
    assert len(children) == 4
    rounds = {r.data.tags["trial_id"]: r for r in children}
    # max_epochs 3, factor 3: three 1-epoch trials, then the best retrained for 3 epochs.
    assert [rounds[i].data.params["epochs"] for i in sorted(rounds)] == ["1", "1", "1", "3"]
    last = rounds[max(rounds)].data.tags
    assert last["tuner/round"] == "1" and last["tuner/bracket"] == "1"
    assert last["tuner/trial_id"] in sorted(rounds)[:3]
    assert {rounds[i].data.tags["tuner/round"] for i in sorted(rounds)[:3]} == {"0"}


def test_a_new_dimension_reaches_both_engines_and_bayesian_completes(workdir, monkeypatch):
    declared = default_space

    def with_new_dimensions(model_dims=True):
        return Space((*declared(model_dims).dims, Float("extra_rate", 0.1, 0.2),
                      Choice("extra_mode", ("a", "b")),
                      Int("extra_steps", 1, 3, when=("extra_mode", ("b",)))))

    monkeypatch.setattr(search.space, "default_space", with_new_dimensions)
    monkeypatch.setitem(search.space.DOMAINS, "extra_mode", ("a", "b"))
    new = ["--fix", "extra_mode=b", *FAST]
    assert main(["search", "--trials", "1", "--epochs", "1", *new]) == 0
    assert main([*KT, "--tuner", "bayesian", "--trials", "2", "--epochs", "1", *new]) == 0
    _, children = _runs(workdir)
    assert sorted(r.data.tags["engine"] for r in children) == ["kerastuner"] * 2 + ["optuna"]
    assert {r.data.tags["state"] for r in children} == {"complete"}
    for run in children:
        params = run.data.params
        assert 0.1 <= float(params["extra_rate"]) <= 0.2 and params["extra_mode"] == "b"
        assert params["extra_steps"] in {"1", "2", "3"}


def test_space_translation_is_mechanical():
    hp = kte.hyperparameters(default_space())
    assert [p.name for p in hp.space] == list(default_space().names)
    parents = {p.name: (c.name, list(c.values)) for p in hp.space for c in p.conditions}
    assert parents["clip_threshold"] == ("clipping", ["clipnorm", "clipvalue", "global_clipnorm"])
    assert parents["warmup_fraction"] == ("schedule", ["cosine_warmup"])
    values = {**hp.values, "clipping": "none", "schedule": "cosine_warmup",
              "clip_threshold": 1.0, "warmup_fraction": 0.1, "batch_norm": True}
    config = kte.config_of(default_space(), values)
    assert "clip_threshold" not in config and config["warmup_fraction"] == 0.1
    assert config["batch_norm"] is True
    assert set(names.TUNERS) == set(kte.TUNERS)


def test_a_condition_under_a_condition_nests_kerastuners_scopes():
    hp = kte.hyperparameters(default_space())
    (every,) = hp._hps["recycle_every"]
    assert [(c.name, list(c.values)) for c in every.conditions] == [
        ("residual", [False]), ("recycle", ["redo"])]
    for residual, recycle, active in [(False, "redo", True), (False, "none", False),
                                      (True, "redo", False)]:
        hp.values.update(residual=residual, recycle=recycle)
        assert hp.is_active(every) is active
        config = kte.config_of(default_space(), {**hp.values, "recycle_every": 2})
        assert ("recycle_every" in config) is active and ("recycle" in config) is not residual


@pytest.mark.parametrize("args, words", [
    ([*KT, "--tuner", "grid"], "invalid choice: 'grid'"),
    (["search", "--tuner", "random"], "--tuner applies to --engine kerastuner only"),
    (["search", "--overwrite"], "--overwrite applies to --engine kerastuner only"),
    ([*KT, "--pruner", "median"], "--pruner applies to --engine optuna only"),
    ([*KT, "--objective", "pareto"], "--objective pareto applies to --engine optuna only"),
    ([*KT, "--storage", "x.journal"], "--storage applies to --engine optuna only"),
    ([*KT, "--study-name", "../up"], "must be a plain name"),
])
def test_bad_input_is_one_line_and_exit_2(workdir, capsys, args, words):
    assert main([*args, "--trials", "1", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not (workdir / "mlruns").exists()


def test_resuming_with_another_tuner_or_space_is_refused(workdir, capsys):
    _study("random", "s")
    assert main([*KT, "--tuner", "bayesian", "--study-name", "s", "--trials", "1"]) == 2
    assert "was run with --tuner random" in capsys.readouterr().err
    assert main([*KT, "--study-name", "s", "--fix", "depth=1", "--trials", "1",
                 "--epochs", "2", "--batch-size", "64"]) == 2
    assert "searched another space" in capsys.readouterr().err
    assert not (workdir / "mlruns" / "mlflow.db").exists()  # refused before any tracking
