"""`keras-relu compare`: each activation on one scenario over several seeds, honestly.

Every (activation, seed) is one run of the shared trial runner (`search.trial.run_trial`),
logged as a child of one MLflow parent run; test accuracy comes from a held-out test set
the training never sees. Per activation: mean and 95% confidence interval (Student t,
n-1 degrees of freedom) of test accuracy, dead fraction and dormant fraction, as a
terminal table, `<scenario>.csv` (+ `<scenario>_runs.csv`, one row per run) and a bar
plot `<scenario>.png`, all also logged on the parent run.
"""

import math
import pathlib
import time

import numpy as np

from search import UsageError

METRICS = ("test_accuracy", "dead_fraction", "dormant_fraction")


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


def _check(args):
    from search.scenarios import SCENARIOS, load

    import keras_relu

    if args.scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {args.scenario!r}; valid: {', '.join(SCENARIOS)}")
    activations = [a.strip() for a in args.activations.split(",") if a.strip()]
    unknown = [a for a in activations if a not in keras_relu.ACTIVATIONS]
    if unknown or not activations:
        raise UsageError(f"unknown activation {', '.join(unknown) or '(none)'}; "
                         f"valid: {', '.join(keras_relu.ACTIVATIONS)}")
    return SCENARIOS[args.scenario], list(dict.fromkeys(activations)), load


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


def run_compare(args, state, out=print):
    """The `keras-relu compare` command; returns the exit status."""
    scenario, activations, load = _check(args)
    import keras

    if args.backend and keras.backend.backend() != args.backend:
        raise UsageError(f"--backend {args.backend}: Keras already runs on {keras.backend.backend()}")
    data, x_test, y_test = load(scenario, args.dataset, args.limit)

    from search.scenarios import builder
    from search.tracking import Tracker, resolve_tracking_uri, ui_command
    from search.trial import TrialSettings, freeze_long_lived_objects, run_trial

    epochs = args.epochs or scenario.epochs
    uri = resolve_tracking_uri(args.tracking_uri)
    tracker = state["tracker"] = Tracker(uri, f"compare-{scenario.name}")
    params = {"scenario": scenario.name, "activations": activations, "seeds": args.seeds,
              "epochs": epochs, "batch_size": scenario.batch_size, "limit": args.limit,
              "dataset": args.dataset, "backend": keras.backend.backend(), **scenario.config}
    tracker.start_parent(params, tags={"kind": "compare", "scenario": scenario.name})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tracker.client.update_run(tracker.parent_id, name=f"compare-{scenario.name}-{stamp}")
    build = builder(scenario)
    freeze_long_lived_objects()
    runs, started = [], time.monotonic()
    for seed in range(args.seeds):
        for activation in activations:
            test = _TestAccuracy(x_test, y_test)
            settings = TrialSettings(epochs=epochs, batch_size=scenario.batch_size, seed=seed)
            result = run_trial({**scenario.config, "activation": activation}, data, settings,
                               number=0, engine="compare", tracker=tracker,
                               callbacks=[test.callback], build=build)
            history = result.history
            run = {"index": len(runs), "activation": activation, "seed": seed,
                   "state": result.state,
                   "test_accuracy": test.value,
                   "dead_fraction": _last(history, "dead_fraction"),
                   "dormant_fraction": _last(history, "dormant_fraction"),
                   "run_id": result.run_id}
            runs.append(run)
            tracker.submit(_finish_child, tracker, run)
            out(f"{activation:<12} seed {seed}: {result.state}, test accuracy "
                f"{_show(run['test_accuracy'])}, dead {_show(run['dead_fraction'])} "
                f"({time.monotonic() - started:.0f} s)")
    rows = summarise(runs, activations)
    text = table(rows)
    folder = pathlib.Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / f"{scenario.name}.csv", "runs": folder / f"{scenario.name}_runs.csv",
             "png": folder / f"{scenario.name}.png"}
    write_csv(paths["csv"], rows)
    write_csv(paths["runs"], runs)
    bar_plot(rows, paths["png"], f"{scenario.name}: {args.seeds} seeds, {epochs} epochs, "
                                 f"{keras.backend.backend()} (95% CI)")
    tracker.flush()
    for path in paths.values():
        tracker.client.log_artifact(tracker.parent_id, str(path))
    tracker.log(tracker.parent_id, metrics={f"{k}/{r['activation']}": r[k] for r in rows
                                            for k in (f"{m}_mean" for m in METRICS)})
    tracker.client.log_text(tracker.parent_id, text + "\n", f"{scenario.name}.txt")
    tracker.finish_parent("FINISHED")
    out(f"\n{scenario.name}: test accuracy, dead and dormant fraction over {args.seeds} seeds "
        f"(mean ± 95% CI half-width), {epochs} epochs, {keras.backend.backend()}")
    out(text)
    out(f"CSV: {paths['csv']}  plot: {paths['png']}")
    out(f"MLflow runs: {ui_command(uri)}")
    return 0


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
