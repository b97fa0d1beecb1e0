"""`keras-relu compare`: each activation on one scenario over several seeds, honestly.

Every (activation, seed) is one run of the shared trial runner (`search.trial.run_trial`),
logged as a child of one MLflow parent run; test accuracy comes from a held-out test set
the training never sees. Per activation: mean and 95% confidence interval (Student t,
n-1 degrees of freedom) of test accuracy, dead fraction and dormant fraction, as a
terminal table, `<scenario>.csv` (+ `<scenario>_runs.csv`, one row per run) and a bar
plot `<scenario>.png`, all also logged on the parent run.
"""

import contextlib
import math
import pathlib
import time

import numpy as np

from search import UsageError, runtime
from search.scenarios import ACTIVATIONS

METRICS = ("test_accuracy", "dead_fraction", "dormant_fraction")
OUTPUT = "mlruns/compare"  # beside the runs, out of the working tree's way


def mean_ci(values, level=0.95):
    """(mean, lower, upper) of `values` with a Student-t interval; NaN bounds if n < 2."""
    from scipy import stats

    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1)
                 / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def summarise(runs, activations):
    """One row per activation: n and mean/CI of each metric over its complete runs."""
    rows = []
    for activation in activations:
        done = [r for r in runs if r["activation"] == activation and r["state"] == "complete"]
        row = {"activation": activation, "n": len(done)}
        for key in METRICS:
            mean, low, high = mean_ci([r[key] for r in done])
            row.update({f"{key}_mean": mean, f"{key}_ci_low": low, f"{key}_ci_high": high})
        rows.append(row)
    return rows


def _fmt(row, key):
    mean, low = row[f"{key}_mean"], row[f"{key}_ci_low"]
    if math.isnan(mean):
        return "-"
    return f"{mean:.3f}" if math.isnan(low) else f"{mean:.3f} ± {mean - low:.3f}"


def table(rows):
    """Fixed-width text: activation, n, then mean ± CI half-width of each metric."""
    head = ["activation", "n", *METRICS]
    body = [[r["activation"], str(r["n"]), *(_fmt(r, k) for k in METRICS)] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
             for line in [head, *body]]
    return "\n".join(lines)


def write_csv(path, rows):
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def bar_plot(rows, path, title):
    """One panel per metric: a bar per activation with its 95% CI as error bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(METRICS), 4), dpi=100)
    FigureCanvasAgg(fig)
    names = [r["activation"] for r in rows]
    for i, key in enumerate(METRICS):
        ax = fig.add_subplot(1, len(METRICS), i + 1)
        means = np.array([r[f"{key}_mean"] for r in rows])
        errors = np.nan_to_num(np.array([r[f"{key}_ci_high"] for r in rows]) - means)
        ax.bar(range(len(rows)), means, yerr=errors, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize="small")
        ax.set(title=key, ylim=(0, 1.02) if key == "test_accuracy" else (0, None))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _check(scenario, activations):
    from search.scenarios import SCENARIOS

    import keras_relu

    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
    unknown = [a for a in activations if a not in keras_relu.ACTIVATIONS]
    if unknown or not activations:
        raise UsageError(f"unknown activation {', '.join(unknown) or '(none)'}; "
                         f"valid: {', '.join(keras_relu.ACTIVATIONS)}")
    return SCENARIOS[scenario], list(dict.fromkeys(activations))


class _TestAccuracy:
    """A callback factory: after training, the accuracy on the held-out test set."""

    def __init__(self, x_test, y_test):
        import keras

        outer = self
        self.value = None

        class Evaluate(keras.callbacks.Callback):
            def on_train_end(self, logs=None):
                outer.value = float(self.model.evaluate(x_test, y_test, verbose=0,
                                                        batch_size=256, return_dict=True)["accuracy"])

        self.callback = Evaluate()


def run_compare(scenario="digits-deep-mlp", activations=ACTIVATIONS, seeds=5, epochs=None,
                limit=None, dataset="scenario", output=OUTPUT, tracking_uri=None, backend=None,
                out=print):
    """`keras-relu compare`: train each activation on `scenario` for `seeds` seeds; write
    and log the table, CSVs and plot; returns the summary rows.

    `dataset="synthetic"` trains on a random stand-in of the scenario's shape; `limit`
    caps every split; `output` is the folder for the CSVs and the plot (also logged).
    """
    scenario, activations = _check(scenario, list(activations))
    keras = runtime.import_keras(backend)
    from search.scenarios import load
    from search.tracking import Tracker, resolve_tracking_uri, ui_command

    data, x_test, y_test = load(scenario, dataset, limit)
    epochs = epochs or scenario.epochs
    uri = resolve_tracking_uri(tracking_uri)
    tracker = Tracker(uri, f"compare-{scenario.name}")
    params = {"scenario": scenario.name, "activations": activations, "seeds": seeds,
              "epochs": epochs, "batch_size": scenario.batch_size, "limit": limit,
              "dataset": dataset, "backend": keras.backend.backend(), **scenario.config}
    tracker.start_parent(params, tags={"kind": "compare", "scenario": scenario.name})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tracker.client.update_run(tracker.parent_id, name=f"compare-{scenario.name}-{stamp}")
    try:
        with runtime.sigterm_as_interrupt():
            runs = _train_all(scenario, activations, seeds, epochs, data, (x_test, y_test),
                              tracker, out)
            rows = summarise(runs, activations)
            title = (f"{scenario.name}: {seeds} seeds, {epochs} epochs, "
                     f"{keras.backend.backend()} (95% CI)")
            paths = _write_outputs(scenario.name, rows, runs, output, title)
            _log_outputs(tracker, scenario.name, rows, paths)
    except BaseException as err:
        with contextlib.suppress(Exception):
            tracker.finish_parent("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    tracker.finish_parent("FINISHED")
    out(f"\n{scenario.name}: test accuracy, dead and dormant fraction over {seeds} seeds "
        f"(mean ± 95% CI half-width), {epochs} epochs, {keras.backend.backend()}")
    out(table(rows))
    out(f"CSV: {paths['csv']}  plot: {paths['png']}")
    out(f"MLflow runs: {ui_command(uri)}")
    return rows


def _train_all(scenario, activations, seeds, epochs, data, test, tracker, out):
    """One trial-runner run per (seed, activation), each a child run with its test accuracy."""
    from search.scenarios import builder
    from search.trial import TrialSettings, freeze_long_lived_objects, run_trial

    build = builder(scenario)
    freeze_long_lived_objects()
    runs, started = [], time.monotonic()
    for seed in range(seeds):
        for activation in activations:
            accuracy = _TestAccuracy(*test)
            settings = TrialSettings(epochs=epochs, batch_size=scenario.batch_size, seed=seed)
            result = run_trial({**scenario.config, "activation": activation}, data, settings,
                               number=0, engine="compare", tracker=tracker,
                               callbacks=[accuracy.callback], build=build)
            run = {"index": len(runs), "activation": activation, "seed": seed,
                   "state": result.state, "test_accuracy": accuracy.value,
                   "dead_fraction": _last(result.history, "dead_fraction"),
                   "dormant_fraction": _last(result.history, "dormant_fraction"),
                   "run_id": result.run_id}
            runs.append(run)
            tracker.submit(_finish_child, tracker, run)
            out(f"{activation:<12} seed {seed}: {result.state}, test accuracy "
                f"{_show(run['test_accuracy'])}, dead {_show(run['dead_fraction'])} "
                f"({time.monotonic() - started:.0f} s)")
    return runs


def _write_outputs(name, rows, runs, output, title):
    folder = pathlib.Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / f"{name}.csv", "runs": folder / f"{name}_runs.csv",
             "png": folder / f"{name}.png"}
    write_csv(paths["csv"], rows)
    write_csv(paths["runs"], runs)
    bar_plot(rows, paths["png"], title)
    return paths


def _log_outputs(tracker, name, rows, paths):
    tracker.flush()
    for path in paths.values():
        tracker.client.log_artifact(tracker.parent_id, str(path))
    tracker.log(tracker.parent_id, metrics={f"{k}/{r['activation']}": r[k] for r in rows
                                            for k in (f"{m}_mean" for m in METRICS)})
    tracker.client.log_text(tracker.parent_id, table(rows) + "\n", f"{name}.txt")


def _finish_child(tracker, run):
    """Name the child `<activation>-seed<k>` and add the test accuracy (writer thread)."""
    run_id = run["run_id"]
    tracker.client.update_run(run_id, name=f"{run['activation']}-seed{run['seed']}")
    tracker.log(run_id, metrics={"test_accuracy": run["test_accuracy"]},
                tags={"activation": run["activation"], "seed": run["seed"],
                      "trial_number": run["index"]})


def _last(history, key):
    values = history.get(key)
    return float(values[-1]) if values else None


def _show(value):
    return "-" if value is None else f"{value:.3f}"
