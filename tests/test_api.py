"""`search.run` from Python: the result, MLflow read back, arrays, workers, the same errors
as the command line, and the device lists both launchers parse."""

import json
import os
import subprocess
import sys

import pytest
from conftest import BACKEND, mlflow_runs, search_logic
from sklearn.datasets import load_digits

import search
from search import runtime
from search.cli import main
from search.tracking import default_tracking_uri

FAST = ["depth=1", "width=16", "batch_norm=false"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_run_returns_the_trials_and_the_best_run_is_in_mlflow(workdir, capsys):
    space = search.default_space().with_cli(choices=["activation=relu,sugar_bsilu"])
    result = search.run(dataset="digits", trials=3, epochs=2, space=space, fix=FAST,
                        study_name="demo", batch_size=128, progress=False)
    assert isinstance(result, search.SearchResult)
    assert capsys.readouterr().err == ""  # no bar when progress=False
    assert [t.number for t in result.trials] == [0, 1, 2]
    assert result.study_name == "demo" and result.total_trials == 3
    assert result.tracking_uri == default_tracking_uri(workdir)
    best = result.best[0]
    assert best.state == "complete" and best.config["activation"] in ("relu", "sugar_bsilu")
    assert best.val_accuracy == max(t.val_accuracy for t in result.trials
                                    if t.state == "complete")
    client, parents, children = mlflow_runs(result.tracking_uri, "demo")
    assert [p.info.run_id for p in parents] == [result.parent_run_id]
    run = client.get_run(best.run_id)
    assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
    assert run.data.metrics["val_accuracy"] == pytest.approx(best.val_accuracy)
    assert run.data.metrics["dead_fraction"] == pytest.approx(best.dead_fraction)
    assert {c.info.run_id for c in children} == {t.run_id for t in result.trials}
    assert "Best trials:" in result.report() and "MLflow runs: keras-relu ui" in result.report()


@search_logic("tensorflow")
def test_run_on_arrays_with_validation_data(workdir):
    x, y = load_digits(return_X_y=True)
    result = search.run(data=(x[:1200], y[:1200]), validation_data=(x[1200:], y[1200:]),
                        trials=1, epochs=1, fix=FAST, progress=False)
    assert result.study_name == "arrays" and result.trials[0].state == "complete"
    client, parents, children = mlflow_runs(result.tracking_uri, "arrays")
    dataset = children[0].data.params["dataset"]
    assert dataset.startswith("arrays-") and parents[0].data.params["dataset"] == dataset
    # The same data again resumes that study; other data is refused.
    assert search.run(data=(x[:1200], y[:1200]), validation_data=(x[1200:], y[1200:]),
                      trials=1, epochs=1, fix=FAST, progress=False).total_trials == 2
    with pytest.raises(search.UsageError, match="was run on other data"):
        search.run(data=(x[:1000], y[:1000]), trials=1, epochs=1, progress=False)


@pytest.mark.parametrize("kwargs, flags", [
    ({"dataset": "imagenet"}, ["--dataset", "imagenet"]),
    ({"fix": ["activation=swishy"]}, ["--fix", "activation=swishy"]),
    ({"engine": "kerastuner", "pruner": "median"}, ["--engine", "kerastuner", "--pruner", "median"]),
    ({"storage": "nosuchdialect://x"}, ["--storage", "nosuchdialect://x"]),
])
def test_bad_input_raises_the_message_the_cli_prints(workdir, capsys, kwargs, flags):
    with pytest.raises(search.UsageError) as info:
        search.run(trials=1, epochs=1, progress=False, **kwargs)
    assert main(["search", "--trials", "1", "--epochs", "1", *flags]) == 2
    assert capsys.readouterr().err == f"keras-relu search: error: {info.value}\n"
    assert not (workdir / "mlruns").exists()


@pytest.mark.parametrize("kwargs, words", [
    ({"trials": 0}, "trials must be a positive integer, got 0"),
    ({"epochs": 2.5}, "epochs must be a positive integer, got 2.5"),
    ({"timeout": -1}, "timeout must be a positive number, got -1"),
    ({"objective": "loss"}, "unknown objective 'loss'; valid: accuracy, pareto"),
    ({"data": [1, 2, 3]}, "data must be a pair of arrays (x, y)"),
    ({"space": {"depth": {"low": 3, "high": 1}}}, "low 3 is above high 1"),
])
def test_python_only_checks(workdir, kwargs, words):
    with pytest.raises(search.UsageError) as info:
        search.run(progress=False, **kwargs)
    assert words in str(info.value)
    assert not (workdir / "mlruns").exists()


@pytest.mark.skipif(BACKEND != "torch", reason="multi-process scenario: runs on the torch pass")
def test_two_workers_from_python_and_the_devices_they_were_given(workdir):
    x, y = load_digits(return_X_y=True)
    result = search.run(data=(x, y), trials=3, epochs=1, fix=FAST, workers=None,
                        devices="0, 1, ", study_name="two", progress=False)
    assert sorted(t.number for t in result.trials) == [0, 1, 2]
    client, parents, children = mlflow_runs(result.tracking_uri, "two")
    assert len(children) == 3 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["device"] for c in children} == {"0", "1"}  # two workers, one each
    assert len({c.data.tags["worker"] for c in children}) == 2
    best = client.get_run(result.best[0].run_id)
    assert best.data.metrics["val_accuracy"] == pytest.approx(result.best[0].val_accuracy)


@pytest.mark.parametrize("text, devices", [
    ("0, ", ["0"]), ("0,1", ["0", "1"]), (" 2 ,, 3 ", ["2", "3"]), ("", []), (None, []),
])
def test_device_lists_parse_once_for_both_launchers(text, devices):
    from search.parallel import kerastuner, optuna

    assert runtime.parse_devices(text) == devices
    assert runtime.worker_count(None, text) == max(1, len(devices))
    assert optuna.runtime is runtime and kerastuner.runtime is runtime  # no copy of it


@search_logic("tensorflow")
def test_the_space_a_search_logs_is_a_space_file_it_reads(workdir):
    space = search.default_space().with_cli(["depth=1"], ["activation=relu,elu"])
    result = search.run(space=space, trials=1, epochs=1, fix=["width=16"], progress=False)
    from mlflow import MlflowClient

    path = MlflowClient(result.tracking_uri).download_artifacts(
        result.parent_run_id, "space.json", str(workdir))
    logged = json.load(open(path))
    assert search.Space.from_dict(logged).dims == space.with_cli(["width=16"]).dims
    assert main(["search", "--space", path, "--trials", "1", "--epochs", "1",
                 "--study-name", "again"]) == 0


def test_help_and_the_package_import_nothing_heavy():
    code = ("import sys, search, search.cli\n"
            "heavy = ('keras', 'tensorflow', 'jax', 'torch', 'mlflow', 'optuna', 'sklearn')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("command, function, elsewhere", [
    ("search", "search.api:run", ()), ("worker", "search.parallel.worker:run_worker", ()),
    ("compare", "search.compare:run_compare", ("study", "top")),
    ("compare", "search.compare_study:check_study",
     ("activations", "cures", "scenario", "limit")),
    ("retrain", "search.retraining:retrain", ()), ("ui", "search.ui:serve", ())])
def test_every_option_of_a_command_reaches_its_function(command, function, elsewhere):
    """The command line only passes options on by name: one its function lacks would be
    dropped without a word (`elsewhere`: options of the command's other function)."""
    import importlib
    import inspect

    from search.cli import build_parser

    module, _, name = function.partition(":")
    accepted = set(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    options = {a.dest for a in parser._actions if a.dest != "help"} - set(elsewhere)
    assert options <= accepted, sorted(options - accepted)
