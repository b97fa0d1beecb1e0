"""`keras-relu compare`: activations and cures on one scenario over several seeds, honestly.

A variant is an activation, or an activation with a cure (`relu+redo`, `relu+rai`,
`relu+residual`). Every (variant, seed) is one run of the shared trial runner
(`search.trial.run_trial`), logged as a child of one MLflow parent run; test accuracy
comes from a held-out test set the training never sees. Per variant: mean and 95%
confidence interval (Student t, n-1 degrees of freedom) of test accuracy, dead fraction
and dormant fraction, as a terminal table, `<scenario>.csv` (+ `<scenario>_runs.csv`,
one row per run) and a bar plot `<scenario>.png`, all also logged on the parent run.
"""

import contextlib
import dataclasses
import pathlib
import time

from search import UsageError, runtime, signals
from search.compare_stats import METRICS, bar_plot, mean_ci, summarise, table, write_csv
from search.scenarios import ACTIVATIONS

__all__ = ["CURES", "METRICS", "Comparison", "mean_ci", "run_compare", "summarise", "table",
           "train_and_report"]
# A cure on top of an activation: the config it changes (see search.space).
CURES = {"none": {}, "redo": {"recycle": "redo", "recycle_every": 1},
         "rai": {"initializer": "rai"}, "residual": {"residual": True}}
OUTPUT = "mlruns/compare"  # beside the runs, out of the working tree's way


def _check(scenario, activations, cures):
    from search.scenarios import SCENARIOS

    import keras_relu

    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
    unknown = [a for a in activations if a not in keras_relu.ACTIVATIONS]
    if unknown or not activations:
        raise UsageError(f"unknown activation {', '.join(unknown) or '(none)'}; "
                         f"valid: {', '.join(keras_relu.ACTIVATIONS)}")
    unknown = [c for c in cures if c not in CURES]
    if unknown or not cures:
        raise UsageError(f"unknown cure {', '.join(unknown) or '(none)'}; "
                         f"valid: {', '.join(CURES)}")
    return SCENARIOS[scenario], variants(activations, cures)


def variants(activations, cures=("none",)):
    """{label: config changes}: each activation with each cure, `relu`, `relu+redo`, ..."""
    return {(a if c == "none" else f"{a}+{c}"): {"activation": a, **CURES[c]}
            for a in dict.fromkeys(activations) for c in dict.fromkeys(cures)}


class _TestScores:
    """A callback factory: after training, the model's scores on the held-out test set."""

    def __init__(self, data, batch_size=256):
        import keras

        outer = self
        self.scores = {}

        class Evaluate(keras.callbacks.Callback):
            def on_train_end(self, logs=None):
                if data.has_test:
                    outer.scores = self.model.evaluate(**data.evaluate_kwargs("test", batch_size),
                                                       verbose=0, return_dict=True)

        self.callback = Evaluate()


@dataclasses.dataclass
class Comparison:
    """Variants trained side by side over seeds: what `train_and_report` runs.

    `variants` maps a label to a whole trial config; `settings(k)` is the
    `search.trial.TrialSettings` of the k-th seed; `metrics` are the columns: `test_<key>`
    the model's `<key>` on the held-out test split after training, any other key its last
    epoch's value (`val_accuracy`, `dead_fraction`, ...).
    """

    name: str  # the files' name; the MLflow experiment is compare-<name>
    variants: dict
    seeds: int
    data: object  # a search.data.Dataset
    build: object
    settings: object
    metrics: tuple = METRICS
    params: dict = dataclasses.field(default_factory=dict)
    tags: dict = dataclasses.field(default_factory=dict)


def run_compare(scenario="digits-deep-mlp", activations=ACTIVATIONS, cures=("none",), seeds=5,
                epochs=None, limit=None, dataset="scenario", output=OUTPUT, tracking_uri=None,
                backend=None, out=print):
    """`keras-relu compare`: train each activation with each cure (`none`, `redo`, `rai`,
    `residual`) on `scenario` for `seeds` seeds; write and log the table, CSVs and plot;
    returns the summary rows.

    `dataset="synthetic"` trains on a random stand-in of the scenario's shape; `limit`
    caps every split; `output` is the folder for the CSVs and the plot (also logged).
    """
    scenario, chosen = _check(scenario, list(activations), list(cures))
    keras = runtime.import_keras(backend)
    from search.scenarios import builder, load
    from search.trial import TrialSettings

    data, _, _ = load(scenario, dataset, limit)
    epochs = epochs or scenario.epochs
    comparison = Comparison(
        scenario.name, {label: {**scenario.config, **changes} for label, changes in chosen.items()},
        seeds, data, builder(scenario),
        lambda seed: TrialSettings(epochs=epochs, batch_size=scenario.batch_size, seed=seed),
        params={"scenario": scenario.name, "variants": list(chosen), "seeds": seeds,
                "epochs": epochs, "batch_size": scenario.batch_size, "limit": limit,
                "dataset": dataset, "backend": keras.backend.backend(), **scenario.config},
        tags={"scenario": scenario.name})
    return train_and_report(comparison, output, tracking_uri, out,
                            f"test accuracy, dead and dormant fraction over {seeds} seeds "
                            f"(mean ± 95% CI half-width), {epochs} epochs")[0]


def train_and_report(comparison, output=OUTPUT, tracking_uri=None, out=print, heading=""):
    """Train every variant of `comparison` over its seeds (one MLflow parent run, a child
    per run), then print, write and log the table (mean and 95% t-interval per metric),
    the CSVs and the bar plot; returns (summary rows, runs)."""
    import keras

    from search.noise import hide_false_alarms
    from search.tracking import Tracker, resolve_tracking_uri, ui_command

    c, backend = comparison, keras.backend.backend()
    uri = resolve_tracking_uri(tracking_uri)
    tracker = Tracker(uri, f"compare-{c.name}")
    tracker.start_parent(c.params, tags={"kind": "compare", **c.tags})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tracker.client.update_run(tracker.parent_id, name=f"compare-{c.name}-{stamp}")
    try:
        with signals.sigterm_as_interrupt(), hide_false_alarms():
            runs = _train_all(c, tracker, out)
            rows = summarise(runs, c.variants, c.metrics)
            paths = _write_outputs(c.name, rows, runs, output,
                                   f"{c.name}: {c.seeds} seeds, {backend} (95% CI)", c.metrics)
            _log_outputs(tracker, c.name, rows, paths, c.metrics)
    except BaseException as err:
        with contextlib.suppress(Exception):
            tracker.finish_parent("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    tracker.finish_parent("FINISHED")
    out(f"\n{c.name}: {heading}, {backend}")
    out(table(rows, c.metrics))
    out(f"CSV: {paths['csv']}  plot: {paths['png']}")
    out(f"MLflow runs: {ui_command(uri)}")
    return rows, runs


def _train_all(c, tracker, out):
    """One trial-runner run per (seed, variant), each a child run with its test scores."""
    from search.trial import freeze_long_lived_objects, run_trial

    freeze_long_lived_objects()
    runs, started = [], time.monotonic()
    for seed in range(c.seeds):
        for variant, config in c.variants.items():
            test = _TestScores(c.data)
            result = run_trial(config, c.data, c.settings(seed), number=0, engine="compare",
                               tracker=tracker, callbacks=[test.callback], build=c.build)
            run = {"index": len(runs), "variant": variant, "seed": seed, "state": result.state,
                   **{k: _score(k, result.history, test.scores) for k in c.metrics},
                   "run_id": result.run_id}
            runs.append(run)
            tracker.submit(_finish_child, tracker, run, c.metrics)
            shown = ", ".join(f"{k} {_show(run[k])}" for k in c.metrics
                              if k != "dormant_fraction")
            out(f"{variant:<16} seed {seed}: {result.state}, {shown} "
                f"({time.monotonic() - started:.0f} s)")
    return runs


def _score(key, history, test_scores):
    if key.startswith("test_"):
        value = test_scores.get(key.removeprefix("test_"))
        return None if value is None else float(value)
    return _last(history, key)


def _write_outputs(name, rows, runs, output, title, metrics):
    folder = pathlib.Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / f"{name}.csv", "runs": folder / f"{name}_runs.csv",
             "png": folder / f"{name}.png"}
    write_csv(paths["csv"], rows)
    write_csv(paths["runs"], runs)
    bar_plot(rows, paths["png"], title, metrics)
    return paths


def _log_outputs(tracker, name, rows, paths, metrics):
    tracker.flush()
    for path in paths.values():
        tracker.client.log_artifact(tracker.parent_id, str(path))
    # MLflow keys take no "+": relu+redo is logged as relu-redo
    tracker.log(tracker.parent_id, metrics={f"{k}/{r['variant'].replace('+', '-')}": r[k]
                                            for r in rows
                                            for k in (f"{m}_mean" for m in metrics)})
    tracker.client.log_text(tracker.parent_id, table(rows, metrics) + "\n", f"{name}.txt")


def _finish_child(tracker, run, metrics):
    """Name the child `<variant>-seed<k>` and add the test scores (writer thread)."""
    run_id = run["run_id"]
    tracker.client.update_run(run_id, name=f"{run['variant']}-seed{run['seed']}")
    tracker.log(run_id, metrics={k: run[k] for k in metrics
                                 if k.startswith("test_") and run[k] is not None},
                tags={"variant": run["variant"], "seed": run["seed"],
                      "trial_number": run["index"]})


def _last(history, key):
    values = history.get(key)
    return float(values[-1]) if values else None


def _show(value):
    return "-" if value is None else f"{value:.3f}"
