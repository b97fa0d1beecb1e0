"""neuron_stats, DeadNeuronMonitor and plot_neuron_history on real Keras models."""

import importlib
import sys
import warnings

import keras
import numpy as np
import pytest

import keras_relu
from keras_relu import neurons, reductions
from keras_relu import DeadNeuronMonitor, neuron_stats


def _no_nchw_conv():
    """TensorFlow on a CPU without oneDNN (no AVX-512) has no NCHW Conv2D kernel: there a
    channels_first model cannot even `predict`, so there is nothing to monitor."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    try:
        tf.nn.convolution(tf.zeros((1, 1, 3, 3)), tf.zeros((1, 1, 1, 1)), data_format="NCHW")
    except tf.errors.UnimplementedError:
        return True
    return False


NCHW = pytest.mark.skipif(_no_nchw_conv(), reason="TensorFlow on this CPU (no oneDNN) has no "
                                                  "NCHW Conv2D kernel; JAX and torch run it")


def _force(layer, dead, alive_bias=10.0, kernel_scale=1.0):
    """Bias -100 on the `dead` units, `alive_bias` on the others."""
    kernel, bias = layer.get_weights()
    bias = np.full_like(bias, alive_bias)
    bias[list(dead)] = -100.0
    layer.set_weights([kernel * kernel_scale, bias])


def _numpy_figures(h, axis, tau):
    """The definitions, in NumPy, on the full activation array `h`."""
    h = np.moveaxis(h, axis, -1).reshape(-1, h.shape[axis]).astype("float64")
    mean_abs = np.abs(h).mean(axis=0)
    scores = mean_abs / (mean_abs.mean() + 1e-9)
    return scores, np.mean(scores <= tau), np.mean(h == 0), np.flatnonzero(h.max(axis=0) <= 0)


def test_dense_bias_minus_100_reports_those_units(rng):
    inp = keras.Input((5,))
    dense = keras.layers.Dense(10, activation="relu")
    model = keras.Model(inp, keras.layers.Dense(2)(dense(inp)))
    _force(dense, [2, 5, 7])
    stats = neuron_stats(model, rng.normal(size=(256, 5)), batch_size=64)
    layer = stats.layers[dense.name]
    assert list(stats.layers) == [dense.name]
    assert layer.dead_fraction == pytest.approx(0.3) and stats.dead_fraction == pytest.approx(0.3)
    assert layer.dead_units == (2, 5, 7) and layer.dead_count == 3 and layer.units == 10


@pytest.mark.parametrize("data_format", ["channels_last",
                                         pytest.param("channels_first", marks=NCHW)])
def test_conv_two_of_eight_channels_dead(rng, data_format):
    shape = (9, 9, 3) if data_format == "channels_last" else (3, 9, 9)
    inp = keras.Input(shape)
    conv = keras.layers.Conv2D(8, 3, data_format=data_format)
    h = keras.layers.Activation("relu")(conv(inp))  # unit axis found through conv
    h = keras.layers.Conv2D(4, 3, activation="relu", data_format=data_format)(h)
    model = keras.Model(inp, h)
    _force(conv, [1, 6])
    stats = neuron_stats(model, rng.normal(size=(48, *shape)), batch_size=16)
    first, second = stats.layers.values()
    assert (first.units, second.units) == (8, 4)
    assert first.dead_fraction == 0.25 and first.dead_units == (1, 6)


@pytest.mark.parametrize("kind", ["dense", pytest.param("conv_first", marks=NCHW),
                                  "conv_last"])
def test_dormant_and_zero_fraction_match_numpy(rng, kind):
    tau = 0.3
    if kind == "dense":
        inp, data = keras.Input((6,)), rng.normal(size=(200, 6))
        pre = keras.layers.Dense(12)
        act, axis = keras.layers.ReLU(), -1
    else:
        fmt = "channels_first" if kind == "conv_first" else "channels_last"
        shape = (2, 7, 7) if fmt == "channels_first" else (7, 7, 2)
        inp, data = keras.Input(shape), rng.normal(size=(50, *shape))
        pre = keras.layers.Conv2D(12, 3, data_format=fmt)
        act, axis = keras.layers.LeakyReLU(0.1), 1 if fmt == "channels_first" else -1
    h = act(pre(inp))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(h)))
    kernel, bias = pre.get_weights()
    kernel[..., :4] *= 0.02  # four quiet units: dormant
    pre.set_weights([kernel, bias])
    stats = neuron_stats(model, data, batch_size=32, tau=tau)
    acts = keras.ops.convert_to_numpy(keras.Model(inp, h)(data.astype("float32")))
    scores, dormant, zero, dead = _numpy_figures(acts, axis, tau)
    layer = stats.layers[act.name]
    np.testing.assert_allclose(layer.scores, scores, rtol=1e-5, atol=1e-6)
    assert 0 < dormant < 1 and abs(layer.dormant_fraction - dormant) <= 1e-6
    assert abs(layer.zero_fraction - zero) <= 1e-6 and abs(stats.zero_fraction - zero) <= 1e-6
    assert layer.dead_units == tuple(dead)
    if kind == "dense":
        assert 0.2 < zero < 0.8  # ReLU: the zero fraction is not trivially 0 or 1


def test_every_activation_is_monitored(rng):
    inp = keras.Input((4,))
    h, acts, denses = inp, [], []
    for name in keras_relu.ACTIVATIONS:
        denses.append(keras.layers.Dense(8))
        acts.append(keras_relu.activation_layer(name))
        h = acts[-1](denses[-1](h))
    model = keras.Model(inp, h)
    for dense in denses:
        _force(dense, [0, 5], alive_bias=3.0, kernel_scale=0.01)
    stats = neuron_stats(model, rng.normal(size=(64, 4)))
    assert list(stats.layers) == [a.name for a in acts]
    for layer in stats.layers.values():
        assert layer.dead_units == (0, 5), layer.name
    assert stats.dead_fraction == 0.25 and stats.units == 8 * len(acts)


def test_nested_and_unbuilt_sequential_models(rng):
    inner = keras.Sequential([keras.layers.Dense(6, activation="relu")])  # no Input
    deepest = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.ELU()])
    middle_in = keras.Input((6,))
    middle = keras.Model(middle_in, deepest(middle_in))
    inp = keras.Input((3,))
    out = keras.layers.Dense(2)(middle(inner(keras.layers.Dense(4, activation="tanh")(inp))))
    model = keras.Model(inp, out)
    _force(inner.layers[0], [4], kernel_scale=0.01)
    _force(deepest.layers[0], [0, 1], kernel_scale=0.01)
    stats = neuron_stats(model, rng.normal(size=(100, 3)))
    assert stats.units == 4 + 6 + 5
    assert stats.layers[inner.layers[0].name].dead_units == (4,)
    assert stats.layers[deepest.layers[1].name].dead_units == (0, 1)
    unbuilt = keras.Sequential([keras.layers.Dense(10, activation="relu"), keras.layers.Dense(1)])
    assert neuron_stats(unbuilt, rng.normal(size=(20, 3))).units == 10


def test_backend_fast_path_matches_portable(rng):
    inp = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(6, 3, activation="relu")
    h = keras.layers.Dense(5, activation="gelu")(keras.layers.GlobalAveragePooling2D()(conv(inp)))
    probe = neurons.Probe(keras.Model(inp, h))
    _force(conv, [2, 4], alive_bias=0.0)
    xs = probe.convert(rng.normal(size=(70, 8, 8, 3)))  # 70: a last, partial batch
    fast = probe.measure(xs, batch_size=32)
    probe.run = reductions.run_portable(probe.probe, probe.axes)
    slow = probe.measure(xs, batch_size=32)
    assert fast.layers[conv.name].dead_units == (2, 4)
    assert 0.4 < fast.layers[conv.name].zero_fraction < 0.9
    for a, b in zip(fast.layers.values(), slow.layers.values()):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
        assert (a.zero_fraction, a.dead_units) == (b.zero_fraction, b.dead_units)


def test_zero_counts_stay_exact_past_float32_range():
    """A batch holds 4097 * 4096 > 2**24 entries of one unit: float32 cannot hold that
    odd zero count, so the cheap float count must give way to an integer one."""
    inp = keras.Input((4096, 1))
    probe = neurons.Probe(keras.Model(inp, keras.layers.Activation("relu")(inp)))
    x = np.zeros((4097, 4096, 1), "float32")
    x[0, :3] = 1.0
    entries = x.size
    stats = probe.measure(probe.convert(x), batch_size=len(x))
    assert entries > 2**24 and (entries - 3) % 2 == 1
    assert round(stats.zero_fraction * entries) == entries - 3
    assert stats.dead_fraction == 0.0


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="a JAX compile option")
def test_an_xla_without_the_probe_compile_option_still_measures(rng, monkeypatch):
    monkeypatch.setattr(reductions, "_JAX_CPU_OPTIONS", {"xla_cpu_no_such_option": "1"})
    inp = keras.Input((6,))
    dense = keras.layers.Dense(4, activation="relu")
    probe = neurons.Probe(keras.Model(inp, dense(inp)))
    _force(dense, [1], alive_bias=0.0)
    stats = probe.measure(probe.convert(rng.normal(size=(40, 6))), batch_size=16)
    assert stats.layers[dense.name].dead_units == (1,)


def test_monitor_counts_revived_units(rng):
    inp = keras.Input((5,))
    dense = keras.layers.Dense(6, activation="relu")
    model = keras.Model(inp, dense(inp))
    monitor = DeadNeuronMonitor(probe=rng.normal(size=(50, 5)), per_layer=True)
    monitor.set_model(model)
    _force(dense, [1, 3])
    monitor.on_train_begin()
    assert monitor.initial.layers[dense.name].dead_units == (1, 3)
    steps = [([3], 1), ([0, 3], 0), ([], 2)]  # (dead units now, revived since last check)
    for epoch, (dead, revived) in enumerate(steps):
        _force(dense, dead)
        logs = {}
        monitor.on_epoch_end(epoch, logs)
        assert logs["revived"] == revived
        assert logs[f"dead_fraction/{dense.name}"] == pytest.approx(len(dead) / 6)
    assert logs["revived_total"] == 3 and monitor.revived_total == 3


def _digits_mlp(activation):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,))
    h = inp
    for _ in range(6):
        h = keras_relu.activation_layer(activation)(keras.layers.Dense(16)(h))
    model = keras.Model(inp, keras.layers.Dense(10)(h))
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = DeadNeuronMonitor(probe=x, max_samples=1024, seed=0)
    history = model.fit(x, y, epochs=3, batch_size=64, verbose=0, callbacks=[monitor])
    return monitor, history.history


def test_digits_high_learning_rate_kills_relu_units_not_sugar(tmp_path):
    relu_monitor, relu = _digits_mlp("relu")
    sugar_monitor, sugar = _digits_mlp("sugar_bsilu")
    print(f"\ndigits dead_fraction: relu initial {relu_monitor.initial.dead_fraction:.3f} "
          f"epochs {np.round(relu['dead_fraction'], 3)}; sugar_bsilu initial "
          f"{sugar_monitor.initial.dead_fraction:.3f} epochs {np.round(sugar['dead_fraction'], 3)}")
    assert len(relu["dead_fraction"]) == 3 and len(relu["revived"]) == 3
    assert relu["dead_fraction"][-1] >= relu_monitor.initial.dead_fraction + 0.15
    assert sugar["dead_fraction"][-1] <= relu["dead_fraction"][-1] - 0.1
    path = keras_relu.plot_neuron_history(relu, tmp_path / "dead.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_accepts_logs_list_and_needs_no_matplotlib_to_import(tmp_path, monkeypatch):
    logs = [{"dead_fraction": 0.1, "dead_fraction/a": 0.2}, {"dead_fraction": 0.3}]
    path = keras_relu.plot_neuron_history(logs, str(tmp_path / "p.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="dead_fraction"):
        keras_relu.plot_neuron_history({"loss": [1.0]}, tmp_path / "q.png")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "matplotlib.figure", raising=False)
    monkeypatch.delitem(sys.modules, "matplotlib.backends.backend_agg", raising=False)
    plots = importlib.reload(sys.modules["keras_relu.plots"])  # imports without it
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plots.plot_neuron_history(logs, tmp_path / "r.png")


def test_no_monitored_layer_warns_once_and_logs_nothing(rng):
    x = rng.normal(size=(32, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, x[:, :1], epochs=3, verbose=0,
                            callbacks=[DeadNeuronMonitor(probe=x)])
    ours = [w for w in caught if "no monitored layer" in str(w.message)]
    assert len(ours) == 1
    assert set(history.history) == {"loss"}
    with pytest.warns(UserWarning, match="no monitored layer"):
        assert neuron_stats(model, x).layers == {}


def test_wrong_probe_raises_at_train_begin(rng):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu")])
    monitor = DeadNeuronMonitor(probe=rng.normal(size=(10, 5)))
    monitor.set_model(model)
    with pytest.raises(ValueError, match=r"shape \(5,\).*expects \(4,\)"):
        monitor.on_train_begin()
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="probe=x_train"):
        model.fit(np.zeros((8, 4)), np.zeros((8, 3)), verbose=0, callbacks=[DeadNeuronMonitor()])


def test_probe_subset_every_and_log_keys(rng):
    x = rng.normal(size=(5000, 4)).astype("float32")
    monitor = DeadNeuronMonitor(probe=x, max_samples=2048, seed=3, every=2, per_layer=True)
    again = DeadNeuronMonitor(probe=x, max_samples=2048, seed=3)
    assert monitor.probe.shape == (2048, 4)
    np.testing.assert_array_equal(monitor.probe, again.probe)
    assert DeadNeuronMonitor(probe=x[:100]).probe.shape == (100, 4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu", name="h")])
    model.compile("sgd", "mse")
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(dict(logs)))
    model.fit(x[:64], np.zeros((64, 3)), epochs=3, verbose=0, callbacks=[monitor, record])
    assert [("dead_fraction" in logs) for logs in seen] == [True, False, True]
    assert {"dead_fraction", "dormant_fraction", "zero_fraction", "revived",
            "dead_fraction/h", "dormant_fraction/h", "zero_fraction/h"} <= set(seen[0])
    assert [epoch for epoch, _ in monitor.checks] == [0, 2]


def test_softmax_output_is_not_monitored():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu", name="hidden"),
                              keras.layers.Dense(3, activation="softmax", name="out"),
                              keras.layers.Softmax(name="again")])
    stats = neuron_stats(model, np.ones((8, 4), "float32"))
    assert list(stats.layers) == ["hidden"] and stats.units == 6


def test_a_probe_per_model_raises_no_retracing_warning(rng, caplog):
    """A search measures a new model every trial; on TensorFlow each probe traces anew."""
    data = rng.normal(size=(40, 4))
    for _ in range(8):
        inp = keras.Input((4,))
        stats = neuron_stats(keras.Model(inp, keras.layers.Dense(3, activation="relu")(inp)),
                             data, batch_size=16)  # 16, 16, 8: two shapes per probe
        assert stats.units == 3
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


@pytest.mark.parametrize("probe", ["abc", b"abc", 3.0, [np.zeros((4, 2)), "x"]])
def test_a_probe_that_is_not_samples_raises_a_clear_value_error(probe):
    with pytest.raises(ValueError, match="must be an array of samples"):
        neurons.draw_probe(probe)


def test_an_empty_probe_raises_instead_of_reporting_everything_dead():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu")])
    with pytest.raises(ValueError, match="no samples"):
        neuron_stats(model, np.zeros((0, 4), "float32"))
    with pytest.raises(ValueError, match="different numbers of samples"):
        neurons.draw_probe([np.zeros((3, 2)), np.zeros((4, 2))])


def test_stats_print_their_figures_not_their_arrays(rng):
    inp = keras.Input((5,))
    dense = keras.layers.Dense(300, activation="relu", name="wide")
    model = keras.Model(inp, keras.layers.Dense(2)(dense(inp)))
    _force(dense, range(0, 300, 10))
    stats = neuron_stats(model, rng.normal(size=(64, 5)))
    text, layer = repr(stats), repr(stats.layers["wide"])
    assert text.startswith("NeuronStats(300 units, 30 dead (0.100)") and "layers: wide" in text
    assert layer.startswith("LayerStats('wide': 300 units, 30 dead (0.100) (0, 10, 20,")
    assert "..." in layer and "array" not in text + layer and len(text) + len(layer) < 400
