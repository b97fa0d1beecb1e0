"""A winner that reproduces and holds up: the winner's file records what ran, `keras-relu
retrain` gets the same score back, an unread dimension is named once, and `keras-relu
compare --study` re-checks the top configs against plain ReLU over fresh seeds."""

import csv
import textwrap
import warnings

import numpy as np
import pytest
import yaml
from conftest import BACKEND, mlflow_runs, search_logic
from sklearn.datasets import load_digits

import search
from search import compare_stats, retraining, winner
from search.dims import load_space_file
from search.cli import main
from search.tracking import default_tracking_uri

CNN = textwrap.dedent('''
    import keras
    from keras import layers


    def build(cures, input_shape, num_classes):
        inputs = keras.Input(input_shape)
        x = cures.conv2d(cures.config["filters"], 3)(inputs)
        x = layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))
''')
CNN_SPACE = "filters: {low: 4, high: 12}\nspare: [1, 2]\nbatch_norm: false\n"


def _child(uri, study):
    """The one trial run of a retrain's study."""
    _, _, children = mlflow_runs(uri, study)
    assert len(children) == 1
    return children[0]


def _retrained(capsys, path, *flags):
    assert main(["retrain", str(path), *flags]) == 0
    return capsys.readouterr().out


@search_logic("tensorflow")
def test_the_built_in_winner_retrains_to_the_same_score_and_holds_up_over_seeds(workdir,
                                                                               capsys):
    result = search.run(trials=3, epochs=2, seed=5, controls=False, progress=False,
                        fix=["depth=2", "width=16"])
    top = result.best[0]
    config, record = winner.read_best_file(result.best_config)
    assert config == top.config
    assert {k: record[k] for k in ("study", "trial", "model", "dataset", "epochs",
                                   "batch_size", "metric", "direction", "seed", "trial_seed",
                                   "backend")} == {
        "study": "digits", "trial": top.number, "model": "built-in", "dataset": "digits",
        "epochs": 2, "batch_size": 64, "metric": "val_accuracy", "direction": "maximize",
        "seed": 5, "trial_seed": 5 + top.number, "backend": BACKEND}
    assert record["value"] == top.value
    steps = result.report()
    for command in (f"keras-relu retrain {result.best_config}",
                    "keras-relu compare --study digits --top 3 --seeds 5",
                    "keras-relu best --study-name digits --output DIR"):
        assert command in steps

    out = _retrained(capsys, result.best_config)
    study = f"digits-retrain-{top.number}"
    run = _child(default_tracking_uri(), study)
    assert run.data.metrics["val_accuracy"] == pytest.approx(top.value, abs=1e-6)
    assert run.data.params["trial_seed"] == str(5 + top.number)
    assert {k: run.data.params[k] for k in ("depth", "width", "activation")} == {
        k: str(top.config[k]) for k in ("depth", "width", "activation")}
    assert f"recorded {top.value:.6g} (the same)" in out

    assert main(["compare", "--study", "digits", "--top", "2", "--seeds", "2",
                 "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    _check_study_comparison(workdir, "digits", [t.number for t in result.best[:2]], out)


def _check_study_comparison(workdir, study, numbers, out):
    labels = [f"trial-{n}" for n in numbers] + ["relu-baseline"]
    with open(workdir / "mlruns" / "compare" / f"{study}_runs.csv") as handle:
        runs = list(csv.DictReader(handle))
    with open(workdir / "mlruns" / "compare" / f"{study}.csv") as handle:
        rows = {r["variant"]: r for r in csv.DictReader(handle)}
    assert list(rows) == labels and len(runs) == 2 * len(labels)
    for label, row in rows.items():
        values = [float(r["val_accuracy"]) for r in runs if r["variant"] == label]
        mean, low, _ = compare_stats.mean_ci(values)
        assert float(row["val_accuracy_mean"]) == pytest.approx(mean)
        assert float(row["val_accuracy_ci_low"]) == pytest.approx(low, nan_ok=True)
        assert 0 <= float(row["test_accuracy_mean"]) <= 1
    client, parents, children = mlflow_runs(default_tracking_uri(), f"compare-{study}")
    assert len(parents) == 1 and parents[0].data.tags["kind"] == "compare"
    assert len(children) == len(runs)
    seeds = {r.data.params["trial_seed"] for r in children}
    assert seeds == {"1000000", "1000001"}  # fresh: no trial's
    baseline = [r for r in children if r.data.tags["variant"] == "relu-baseline"]
    assert {r.data.params["activation"] for r in baseline} == {"relu"}
    assert "Against relu-baseline (val_accuracy, paired by seed" in out
    assert sum(f"  trial-{n} " in out for n in numbers) == len(numbers)


@search_logic("torch")
def test_a_user_cnn_on_an_npz_file_retrains_to_the_same_score(workdir, capsys):
    x, y = load_digits(return_X_y=True)
    np.savez(workdir / "digits_img.npz", x_train=x.reshape(-1, 8, 8, 1)[:900], y_train=y[:900])
    (workdir / "digits_cnn.py").write_text(CNN)
    (workdir / "space.yaml").write_text(CNN_SPACE)
    with pytest.warns(UserWarning) as caught:
        result = search.run(model="digits_cnn.py:build", dataset="npz:digits_img.npz",
                            space="space.yaml", trials=3, epochs=2, progress=False,
                            study_name="cnn")
    unread = [str(w.message) for w in caught if "read by neither" in str(w.message)]
    # conv2d blocks take no dropout unless asked: the dimension changes nothing here either
    assert len(unread) == 1 and unread[0].startswith("dimensions dropout, spare of the search "
                                                     "space are read by neither"), unread

    top = result.best[0]
    text = (workdir / "mlruns" / "best" / "cnn.yaml").read_text()
    record = yaml.safe_load(text)["trained_with"]
    assert record["model"] == f"{workdir / 'digits_cnn.py'}:build"
    assert record["dataset"] == "npz:digits_img.npz"
    out = _retrained(capsys, "mlruns/best/cnn.yaml", "--study-name", "cnn-again")
    run = _child(default_tracking_uri(), "cnn-again")
    assert run.data.metrics["val_accuracy"] == pytest.approx(top.value, abs=1e-6)
    assert run.data.params["filters"] == str(top.config["filters"])
    assert run.data.params["dataset"] == "npz:digits_img.npz"
    assert "(the same)" in out

    assert main(["compare", "--study", "cnn", "--top", "1", "--seeds", "2", "--epochs",
                 "1"]) == 0
    _check_study_comparison(workdir, "cnn", [top.number], capsys.readouterr().out)


def _winner_file(path, **record):
    base = {"study": "s", "trial": 0, "value": 0.5, "metric": "val_accuracy",
            "direction": "maximize", "model": "built-in", "dataset": "digits", "epochs": 1,
            "batch_size": 64, "seed": 0, "trial_seed": 0, "backend": BACKEND}
    path.write_text(yaml.safe_dump({"activation": "relu", "depth": 1, "width": 8,
                                    "trained_with": {**base, **record}}))
    return path


@pytest.mark.parametrize("record, words", [
    ({"model": "no_such_module:build"}, "cannot import no_such_module"),
    ({"dataset": "npz:gone.npz"}, "gone.npz does not exist"),
    ({"dataset": "arrays-0123456789ab"}, "pass the same data="),
    ({"model": "from Python: build"}, "pass it: search.retrain(FILE, model=build)"),
    ({"trial_seed": None, "epochs": None}, "trained_with lacks epochs, trial_seed"),
])
def test_a_retrain_that_cannot_run_is_one_line_before_anything_is_created(workdir, capsys,
                                                                         record, words):
    assert main(["retrain", str(_winner_file(workdir / "w.yaml", **record))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not (workdir / "mlruns").exists()


def test_a_space_file_is_no_winners_file_and_the_record_is_no_dimension(workdir, capsys):
    (workdir / "space.yaml").write_text("activation: relu\n")
    assert main(["retrain", "space.yaml"]) == 2
    assert "holds no `trained_with` record" in capsys.readouterr().err
    assert load_space_file(_winner_file(workdir / "w.yaml")) == {
        "activation": "relu", "depth": 1, "width": 8}


def test_another_backend_than_the_recorded_one_warns():
    other = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[BACKEND]
    with pytest.warns(UserWarning, match=f"trained on {other}; retrained on {BACKEND}"):
        assert retraining.choose_backend(other) == BACKEND
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert retraining.choose_backend(BACKEND) == BACKEND

