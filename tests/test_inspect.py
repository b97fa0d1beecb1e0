"""`keras-relu inspect`: a saved model's dead units per layer, equal to `neuron_stats`, logged
to MLflow; bad input is one line and exit status 2."""

import json

import keras
import numpy as np
import pytest
from conftest import mlflow_runs, one_pass
from keras import layers

import keras_relu
from search import data as datasets
from search.cli import main
from search.diagnose import probe_samples


def saved_model(path, inputs=64, dead=10):
    """A digits MLP whose first `dead` units of `hidden` can never fire (bias -1000)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((inputs,)), layers.Dense(32, name="hidden"),
                              layers.Activation("relu", name="hidden_relu"),
                              layers.Dense(16, activation="relu", name="second"),
                              layers.Dense(10, activation="softmax", name="out")])
    kernel, bias = model.get_layer("hidden").get_weights()
    bias[:dead] = -1000.0
    model.get_layer("hidden").set_weights([kernel, bias])
    swapped = keras_relu.replace_activations(model)  # SUGAR layers load as well
    swapped.save(path)
    return swapped


@one_pass("tensorflow", "inspect on a saved model")
def test_inspect_reports_dead_units_as_neuron_stats_does(workdir, capsys):
    model = saved_model(workdir / "m.keras")
    uri = f"sqlite:///{workdir / 'runs.db'}"
    assert main(["inspect", str(workdir / "m.keras"), "--dataset", "digits", "--samples", "500",
                 "--output", "out", "--tracking-uri", uri]) == 0
    x = probe_samples(datasets.load("digits", 0), "train", 500, 0)
    want = keras_relu.neuron_stats(model, x)
    got = json.loads((workdir / "out" / "neuron_stats.json").read_text())
    assert set(got["layers"]) == set(want.layers) == {"hidden_relu", "second_activation"}
    for name, layer in want.layers.items():
        assert got["layers"][name]["dead_units"] == list(layer.dead_units)
        for key in ("dead_fraction", "dormant_fraction", "zero_fraction"):
            assert got["layers"][name][key] == getattr(layer, key)
    assert want.layers["hidden_relu"].dead_units[:10] == tuple(range(10))
    out = capsys.readouterr().out
    assert "dead units of hidden_relu: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in out
    row = next(line for line in out.splitlines() if line.startswith("hidden_relu "))
    assert row.split()[1:3] == ["32", str(want.layers["hidden_relu"].dead_count)]
    assert (workdir / "out" / "unit_activity.png").stat().st_size > 5000
    client, runs, _ = mlflow_runs(uri, "inspect")
    assert len(runs) == 1 and runs[0].data.tags["kind"] == "inspect"
    metrics = runs[0].data.metrics
    assert metrics["dead_fraction/hidden_relu"] == want.layers["hidden_relu"].dead_fraction
    assert metrics["dead_fraction"] == want.dead_fraction
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} == {
        "neuron_stats.json", "unit_activity.png"}


@one_pass("jax", "inspect's bad input")
def test_inspect_bad_input_is_one_line_and_exit_2(workdir, capsys):
    (workdir / "text.keras").write_text("not a model")
    (workdir / "empty.keras").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip archive
    saved_model(workdir / "narrow.keras", inputs=10)
    cases = {"missing.keras": "no model file",
             "text.keras": "not a Keras model file",
             "empty.keras": "not a Keras model Keras can load",
             "narrow.keras": "does not fit"}
    for name, message in cases.items():
        assert main(["inspect", str(workdir / name), "--output", "out"]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (name, err)
    assert main(["inspect", str(workdir / "narrow.keras"), "--dataset", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert not (workdir / "out").exists()  # nothing written before the input was checked
