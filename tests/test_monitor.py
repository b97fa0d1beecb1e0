"""DeadNeuronMonitor: which keys it logs, stopping on dead units, bad arguments."""

import logging

import keras
import numpy as np
import pytest

from keras_relu import DeadNeuronMonitor


def _model(dead, units=10):
    """Dense(units, relu) with `dead` units at bias -100: they stay dead (no gradient)."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation="relu",
                                                                    name="hidden"),
                              keras.layers.Dense(1, name="out")])
    kernel, bias = model.layers[0].get_weights()
    bias = np.full_like(bias, 1.0)
    bias[list(dead)] = -100.0
    model.layers[0].set_weights([kernel * 0.1, bias])
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return model


def _fit(model, monitor, epochs, rng):
    x = rng.normal(size=(64, 4)).astype("float32")
    return model.fit(x, x[:, :1], epochs=epochs, batch_size=16, verbose=0,
                     callbacks=[monitor]).history


def test_per_layer_keys_only_on_request(rng):
    """Three keys per layer crowded Keras' progress line: off by default."""
    x = rng.normal(size=(64, 4)).astype("float32")
    plain = _fit(_model([0]), DeadNeuronMonitor(probe=x), 1, rng)
    assert set(plain) == {"loss", "dead_fraction", "dormant_fraction", "zero_fraction",
                          "revived", "revived_total"}
    detailed = _fit(_model([0]), DeadNeuronMonitor(probe=x, per_layer=True), 1, rng)
    assert {"dead_fraction/hidden", "dormant_fraction/hidden",
            "zero_fraction/hidden"} <= set(detailed)
    assert detailed["dead_fraction/hidden"] == [pytest.approx(0.1)]


def test_stop_above_stops_training_and_says_why(rng, caplog):
    x = rng.normal(size=(64, 4)).astype("float32")
    monitor = DeadNeuronMonitor(probe=x, stop_above=0.5)
    with caplog.at_level(logging.WARNING, logger="keras_relu"):
        history = _fit(_model(range(7)), monitor, 5, rng)
    assert len(history["loss"]) == 1  # stopped after the first epoch's check
    assert monitor.stopped_reason == "dead fraction 0.70 > 0.5 at epoch 0"
    assert monitor.stopped_epoch == 0
    assert [r.getMessage() for r in caplog.records if r.name == "keras_relu"] == [
        "DeadNeuronMonitor stops training: dead fraction 0.70 > 0.5 at epoch 0."]
    # the same instance again, on a model that stays below: no stop, and no stale reason
    history = _fit(_model(range(3)), monitor, 3, rng)
    assert len(history["loss"]) == 3
    assert monitor.stopped_reason is None and monitor.stopped_epoch is None


def test_patience_waits_for_more_checks_above(rng):
    x = rng.normal(size=(64, 4)).astype("float32")
    monitor = DeadNeuronMonitor(probe=x, stop_above=0.5, patience=2)
    history = _fit(_model(range(6)), monitor, 6, rng)
    assert len(history["loss"]) == 3
    assert monitor.stopped_reason == "dead fraction 0.60 > 0.5 at epoch 2"
    monitor = DeadNeuronMonitor(probe=x, stop_above=0.5, every=2)  # epochs 0, 2, 4 checked
    assert len(_fit(_model(range(6)), monitor, 6, rng)["loss"]) == 1
    assert monitor.stopped_epoch == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"stop_above": 1.0}, "stop_above"), ({"stop_above": -0.1}, "stop_above"),
    ({"stop_above": "half"}, "stop_above"), ({"patience": -1}, "patience"),
    ({"every": 0}, "every"), ({"probe": "abc"}, "array of samples"),
    ({"probe": np.zeros((0, 4))}, "no samples")])
def test_bad_arguments_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeadNeuronMonitor(**{"probe": np.zeros((4, 4)), **kwargs})
