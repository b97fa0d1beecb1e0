"""Figures of the neuron metrics. matplotlib is optional: imported only here, when called."""

_PREFIX = "dead_fraction/"


def _as_history(history_or_logs):
    """{key: [value per epoch]} from a History, its `.history`, or a list of epoch logs."""
    history = getattr(history_or_logs, "history", history_or_logs)
    if isinstance(history, dict):
        return {k: list(v) for k, v in history.items()}
    if isinstance(history, (list, tuple)):
        keys = dict.fromkeys(k for logs in history for k in logs)
        return {k: [logs.get(k, float("nan")) for logs in history] for k in keys}
    raise ValueError(
        "plot_neuron_history expects a keras History, its `.history` dict, or a "
        f"list of epoch logs; got {type(history_or_logs).__name__}.")


def plot_neuron_history(history_or_logs, path, title="Dead units per layer"):
    """Writes a PNG of the dead fraction of each layer over epochs to `path`.

    One line per layer (the `dead_fraction/<layer name>` keys that
    `DeadNeuronMonitor` logs), and the overall `dead_fraction` dashed.

    Args:
        history_or_logs: the `History` returned by `model.fit`, its `.history`
            dict, or a list of epoch `logs` dicts.
        path: where to write the PNG.
        title: the figure title.

    Returns:
        `path`.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as e:
        raise ImportError(
            "plot_neuron_history needs matplotlib: pip install matplotlib") from e
    history = _as_history(history_or_logs)
    per_layer = {k[len(_PREFIX):]: v for k, v in history.items() if k.startswith(_PREFIX)}
    if not per_layer and "dead_fraction" not in history:
        raise ValueError(
            "No `dead_fraction` keys to plot; log them with keras_relu.DeadNeuronMonitor "
            f"(keys found: {', '.join(history) or 'none'}).")
    # Cheap to draw (it is drawn for every trial of a search): fixed layout, no
    # tight_layout, legend outside the axes (no "best" placement search).
    fig = Figure(figsize=(7, 3.6), dpi=72)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.09, 0.14, 0.62, 0.76))
    for name, values in per_layer.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    if "dead_fraction" in history:
        values = history["dead_fraction"]
        ax.plot(range(1, len(values) + 1), values, "k--", linewidth=2, label="all layers")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="dead fraction", title=title, ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.savefig(path, format="png")
    return path
