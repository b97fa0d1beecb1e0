"""Figures of the neuron metrics. matplotlib is optional: imported only here, when called.

Cheap to draw (a search draws them for every trial): a fixed layout on an Agg
canvas, no `tight_layout`, no pyplot (no global figure state).
"""

import math

import numpy as np

from keras_relu.stats import NeuronStats

_PREFIX = "dead_fraction/"
_INIT = -1  # the x of the measurement before training, labelled "init"


def _matplotlib(what):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"{what} needs matplotlib: pip install matplotlib") from e
    return Figure, FigureCanvasAgg


def _as_history(source):
    """({key: [value per check]}, [epoch per check] or None) from a monitor, a History,
    its `.history` or a list of epoch logs (None: their values are epochs 0, 1, ...)."""
    if hasattr(source, "checks") and hasattr(source, "initial"):  # a DeadNeuronMonitor
        history = {}
        for _, stats in source.checks:
            for key, value in stats.logs(per_layer=True).items():
                history.setdefault(key, []).append(value)
        return history, [epoch for epoch, _ in source.checks]
    history = getattr(source, "history", source)
    if isinstance(history, dict):
        history = {k: list(v) for k, v in history.items()}
    elif isinstance(history, (list, tuple)):
        keys = dict.fromkeys(k for logs in history for k in logs)
        history = {k: [logs.get(k, float("nan")) for logs in history] for k in keys}
    else:
        raise ValueError(
            "plot_neuron_history expects a DeadNeuronMonitor, a keras History, its "
            f"`.history` dict, or a list of epoch logs; got {type(source).__name__}.")
    return history, None


def neuron_history_figure(source, initial=None, title="Dead units per layer"):
    """The matplotlib `Figure` that `plot_neuron_history` writes (see there)."""
    Figure, FigureCanvasAgg = _matplotlib("plot_neuron_history")
    from matplotlib.ticker import MaxNLocator

    history, epochs = _as_history(source)
    if initial is None and hasattr(source, "initial"):
        initial = source.initial
    if initial is not None and hasattr(initial, "logs"):
        initial = initial.logs(per_layer=True)
    per_layer = {k[len(_PREFIX):]: v for k, v in history.items() if k.startswith(_PREFIX)}
    if not per_layer and "dead_fraction" not in history:
        raise ValueError(
            "No `dead_fraction` keys to plot; log them with keras_relu.DeadNeuronMonitor "
            f"(keys found: {', '.join(history) or 'none'}).")
    fig = Figure(figsize=(7, 3.6), dpi=72)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.09, 0.14, 0.62, 0.76))
    curves = [(name, values, {"marker": "o", "markersize": 3})
              for name, values in per_layer.items()]
    if "dead_fraction" in history:
        curves.append(("all layers", history["dead_fraction"],
                       {"color": "k", "linestyle": "--", "linewidth": 2}))
    for name, values, style in curves:
        key = "dead_fraction" if name == "all layers" else _PREFIX + name
        xs, ys = list(range(len(values)) if epochs is None else epochs), list(values)
        if initial is not None and key in initial:
            xs, ys = [_INIT, *xs], [initial[key], *ys]
        ax.plot(xs, ys, label=name, **style)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(lambda x, _: "init" if x == _INIT else f"{x:g}")
    ax.set(xlabel="epoch", ylabel="dead fraction", title=title, ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


def plot_neuron_history(source, path, title="Dead units per layer", initial=None):
    """Writes a PNG of the dead fraction of each layer over epochs to `path`.

    One line per layer (the `dead_fraction/<layer name>` keys), and the overall
    `dead_fraction` dashed. Epochs are numbered from 0, like Keras' epoch index
    and MLflow's steps; the measurement before training, when given, is drawn
    at x = -1, labelled "init".

    Args:
        source: a `DeadNeuronMonitor` (its checks, at their epochs, every layer
            even with `per_layer=False`, and its `initial`), or the `History`
            returned by `model.fit`, its `.history` dict, or a list of epoch
            `logs` dicts (their values are drawn at epochs 0, 1, ...: with a
            monitor checking `every` > 1 epochs, pass the monitor instead).
        path: where to write the PNG.
        title: the figure title.
        initial: the figures before training: a `NeuronStats` (e.g.
            `monitor.initial`) or a dict of log keys; None for none (a
            monitor's own `initial` when `source` is a monitor).

    Returns:
        `path`.
    """
    neuron_history_figure(source, initial, title).savefig(path, format="png")
    return path


def _columns(monitor):
    """[(label, epoch, NeuronStats)] of the monitor's measurements, "init" first (one
    column for a `NeuronStats` itself)."""
    if isinstance(monitor, NeuronStats):
        return [("model", 0, monitor)]
    columns = [("init", _INIT, monitor.initial)] if monitor.initial is not None else []
    return columns + [(str(epoch), epoch, stats) for epoch, stats in monitor.checks]


def _recycle_marks(redo, name, epochs):
    """(x, unit) of each unit `redo` recycled in layer `name`, at the column boundary."""
    marks = []
    for epoch, step, chosen in getattr(redo, "recycles", ()):
        before = [i for i, e in enumerate(epochs) if e < epoch or (e == epoch and step is None)]
        x = (before[-1] if before else -1) + 0.5
        marks += [(x, unit) for unit in chosen.get(name, ())]
    return marks


def unit_activity_figure(monitor, redo=None, title="Unit activity (tau-dormant score)",
                         floor=1e-3):
    """The matplotlib `Figure` that `plot_unit_activity` writes (see there)."""
    Figure, FigureCanvasAgg = _matplotlib("plot_unit_activity")
    from matplotlib.colors import LogNorm

    columns = _columns(monitor)
    if not columns or not columns[0][2].layers:
        raise ValueError("plot_unit_activity needs a DeadNeuronMonitor that has measured a "
                         "model with monitored layers (after fit, or on_train_begin), or the "
                         "NeuronStats of one (keras_relu.neuron_stats).")
    names = list(columns[0][2].layers)
    epochs = [epoch for _, epoch, _ in columns]
    ncols = min(len(names), 4)
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(2.6 * ncols + 1.0, 2.4 * nrows + 0.6), dpi=72)
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize="medium")
    norm, width, height = LogNorm(floor, 10.0), 0.8 / ncols, 0.84 / nrows
    for i, name in enumerate(names):
        row, col = divmod(i, ncols)
        ax = fig.add_axes((0.06 + col * width, 0.08 + (nrows - 1 - row) * height,
                           width * 0.8, height * 0.72))
        scores = np.stack([stats.layers[name].scores for _, _, stats in columns], axis=1)
        image = ax.imshow(np.clip(scores, floor, None), aspect="auto", norm=norm,
                          cmap="viridis", interpolation="nearest", origin="lower")
        dead = [(j, u) for j, (_, _, stats) in enumerate(columns)
                for u in stats.layers[name].dead_units]
        if dead:
            ax.scatter(*zip(*dead), marker="x", s=12, color="red", linewidths=0.8,
                       label="dead")
        recycled = _recycle_marks(redo, name, epochs) if redo is not None else []
        if recycled:
            ax.scatter(*zip(*recycled), marker=">", s=14, color="white",
                       edgecolors="black", linewidths=0.4, label="recycled")
        ax.set_xticks(range(len(columns)), [label for label, _, _ in columns],
                      fontsize="x-small")
        ax.set_title(name, fontsize="small")
        ax.set(xlim=(-0.5, len(columns) - 0.5), ylim=(-0.5, scores.shape[0] - 0.5))
        ax.tick_params(labelsize="x-small")
    colorbar = fig.add_axes((0.87, 0.15, 0.015, 0.7))
    fig.colorbar(image, cax=colorbar).set_label("score (log); red x: dead", fontsize="small")
    return fig


def plot_unit_activity(monitor, path, redo=None, title="Unit activity (tau-dormant score)"):
    """Writes a PNG of every unit of every monitored layer over the checks to `path`.

    One panel per monitored layer: units (rows) by checks (columns: "init",
    then each checked epoch), each cell coloured by the unit's tau-dormant
    score on a log scale (scores below 1e-3, dead units' 0 included, take the
    darkest colour), dead units marked with a red x. A unit that `ReDo`
    recycled comes back in colour in the next column; pass `redo` to mark the
    recycle itself (a white triangle at the column boundary). In the spirit of
    fastai's `ActivationStats.color_dim`.

    Args:
        monitor: a `DeadNeuronMonitor` after (or during) training, or one
            measurement, `keras_relu.neuron_stats(model, x)` (a single column).
        path: where to write the PNG.
        redo: optionally, the `ReDo` callback of the same training.
        title: the figure title.

    Returns:
        `path`.
    """
    unit_activity_figure(monitor, redo, title).savefig(path, format="png")
    return path
