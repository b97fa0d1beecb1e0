"""The objective: --metric and --direction, the samplers, which trials keep their model, and
resuming a study with another budget or metric."""

import math

import optuna
import pytest
from conftest import mlflow_runs, search_logic

from search.cli import main
from search.engines import optuna as engine
from search.settings import SearchSettings
from search.space import default_space
from search.tracking import default_tracking_uri

pytestmark = search_logic("torch")

FAST = ["--fix=depth=1", "--fix=width=16", "--batch-size=128"]


def test_minimising_val_loss_keeps_a_model_only_for_each_improvement(workdir, capsys):
    assert main(["search", "--metric", "val_loss", "--trials", "6", "--epochs", "1",
                 "--pruner", "none", *FAST]) == 0
    assert "val_loss" in capsys.readouterr().out
    study = optuna.load_study(study_name="digits", storage=engine.open_storage())
    assert study.direction == optuna.study.StudyDirection.MINIMIZE  # inferred from the name
    client, parents, children = mlflow_runs(default_tracking_uri(workdir), "digits")
    runs = {int(r.data.tags["trial_number"]): r for r in children}
    best_so_far, improvements = math.inf, []
    for trial in sorted(study.trials, key=lambda t: t.number):
        assert trial.value == pytest.approx(runs[trial.number].data.metrics["val_loss"])
        if trial.value < best_so_far:
            best_so_far = trial.value
            improvements.append(trial.number)
    kept = sorted(n for n, r in runs.items() if r.data.tags.get("model_uri"))
    assert kept == improvements  # a model per improvement, none for the others
    experiment_id = parents[0].info.experiment_id  # the study's, not MLflow's Default
    models = client.search_logged_models(experiment_ids=[experiment_id])
    assert sorted(f"models:/{m.model_id}" for m in models) == sorted(
        runs[n].data.tags["model_uri"] for n in kept)
    assert parents[0].data.tags["best_model_run_id"] == runs[improvements[-1]].info.run_id
    assert parents[0].data.metrics["best_val_loss"] == pytest.approx(best_so_far)
    assert "best_test_loss" in parents[0].data.metrics


@pytest.mark.parametrize("sampler, kind", [(None, optuna.samplers.TPESampler),
                                           ("random", optuna.samplers.RandomSampler),
                                           ("gp", optuna.samplers.GPSampler)])
def test_the_sampler_is_the_one_asked_for(tmp_path, sampler, kind):
    settings = SearchSettings(sampler=sampler, storage=str(tmp_path / "j.log")).check()
    study = engine.open_search(settings, "s", default_space(), "digits")
    assert isinstance(study.sampler, kind)


@pytest.mark.parametrize("first, again, words", [
    (["--epochs", "1"], ["--epochs", "2"], "was run with --epochs 1, not 2"),
    (["--batch-size", "128"], ["--batch-size", "64"], "was run with --batch-size 128, not 64"),
    ([], ["--metric", "val_loss"], "another objective or direction"),
    (["--engine", "kerastuner"], ["--engine", "kerastuner", "--epochs", "2"],
     "was run with --epochs 1, not 2"),
])
def test_resuming_with_another_budget_or_metric_is_refused(workdir, capsys, first, again, words):
    base = ["search", "--trials", "1", "--fix=depth=1", "--fix=width=16"]
    assert main([*base, "--epochs", "1", "--batch-size", "128", *first]) == 0
    capsys.readouterr()
    given = dict(zip(again[::2], again[1::2]))
    args = {"--epochs": "1", "--batch-size": "128", **given}
    flags = [x for k, v in args.items() for x in (k, v)]
    assert main([*base, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
