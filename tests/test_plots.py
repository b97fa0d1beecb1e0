"""plot_neuron_history and plot_unit_activity: what they draw, where, from what."""

import importlib
import sys

import keras
import numpy as np
import pytest

import keras_relu
from keras_relu import plots

PNG = b"\x89PNG\r\n\x1a\n"


def _lines(fig):
    ax = fig.axes[0]
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
            for line in ax.get_lines()}, ax


def test_history_counts_epochs_from_zero_and_draws_the_initial_check_at_init():
    """MLflow steps and Keras' epoch index start at 0; the figure did at 1 and dropped
    the measurement before training."""
    history = {"loss": [3.0, 2.0, 1.0], "dead_fraction": [0.2, 0.3, 0.4],
               "dead_fraction/a": [0.5, 0.6, 0.7]}
    initial = {"dead_fraction": 0.1, "dead_fraction/a": 0.25}
    lines, ax = _lines(plots.neuron_history_figure(history, initial=initial))
    assert lines["a"] == ([-1, 0, 1, 2], [0.25, 0.5, 0.6, 0.7])
    assert lines["all layers"] == ([-1, 0, 1, 2], [0.1, 0.2, 0.3, 0.4])
    assert ax.xaxis.get_major_formatter()(-1, 0) == "init"
    assert ax.xaxis.get_major_formatter()(2, 0) == "2"
    lines, _ = _lines(plots.neuron_history_figure([{"dead_fraction": 0.5},
                                                   {"dead_fraction": 0.25}]))
    assert lines["all layers"] == ([0, 1], [0.5, 0.25])


def _trained(rng, epochs=3, **monitor_kwargs):
    x = rng.normal(size=(128, 6)).astype("float32")
    inp = keras.Input((6,))
    dense = keras.layers.Dense(12, name="hidden")
    h = keras.layers.ReLU(name="relu")(dense(inp))
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    kernel, bias = dense.get_weights()
    bias[:] = 1.0
    bias[[3, 8]] = -100.0
    dense.set_weights([kernel * 0.1, bias])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    monitor = keras_relu.DeadNeuronMonitor(probe=x, **monitor_kwargs)
    redo = keras_relu.ReDo(probe=x)
    history = model.fit(x, x[:, :2], epochs=epochs, verbose=0, callbacks=[monitor, redo])
    return monitor, redo, history


def test_history_from_a_monitor_has_its_epochs_and_every_layer(rng):
    monitor, _, history = _trained(rng, epochs=5, every=2)  # per_layer off: not in history
    assert "dead_fraction/relu" not in history.history
    lines, _ = _lines(plots.neuron_history_figure(monitor))
    assert lines["relu"][0] == [-1, 0, 2, 4]  # init, then the checked epochs
    assert lines["relu"][1][:2] == [pytest.approx(2 / 12), pytest.approx(2 / 12)]


def test_unit_activity_shows_scores_dead_units_and_recycles(rng, tmp_path):
    monitor, redo, _ = _trained(rng)
    assert redo.recycles[0] == (0, None, {"relu": (3, 8)})
    fig = plots.unit_activity_figure(monitor, redo)
    panel = next(ax for ax in fig.axes if ax.get_title() == "relu")
    (image,) = panel.get_images()
    scores = np.stack([monitor.initial.layers["relu"].scores]
                      + [s.layers["relu"].scores for _, s in monitor.checks], axis=1)
    assert image.get_array().shape == (12, 4)  # units x (init, epochs 0, 1, 2)
    np.testing.assert_allclose(image.get_array(), np.clip(scores, 1e-3, None))
    dead, recycled = panel.collections  # red x per dead unit and check; recycle triangles
    assert sorted(map(tuple, dead.get_offsets().tolist())) == [(0, 3), (0, 8), (1, 3), (1, 8)]
    assert sorted(map(tuple, recycled.get_offsets().tolist())) == [(1.5, 3), (1.5, 8)]
    assert [t.get_text() for t in panel.get_xticklabels()] == ["init", "0", "1", "2"]
    path = keras_relu.plot_unit_activity(monitor, tmp_path / "units.png", redo=redo)
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="DeadNeuronMonitor that has measured"):
        plots.unit_activity_figure(keras_relu.DeadNeuronMonitor(probe=np.zeros((2, 6))))


def test_plots_import_without_matplotlib_and_say_what_to_install(tmp_path, monkeypatch, rng):
    monitor, _, _ = _trained(rng, epochs=1)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "matplotlib.figure", raising=False)
    monkeypatch.delitem(sys.modules, "matplotlib.backends.backend_agg", raising=False)
    reloaded = importlib.reload(sys.modules["keras_relu.plots"])  # imports without it
    with pytest.raises(ImportError, match="plot_unit_activity needs matplotlib: pip install"):
        reloaded.plot_unit_activity(monitor, tmp_path / "u.png")
    with pytest.raises(ImportError, match="plot_neuron_history needs matplotlib"):
        reloaded.plot_neuron_history(monitor, tmp_path / "h.png")
