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
import pathlib
import time

from search import UsageError, runtime, signals
from search.compare_stats import METRICS, bar_plot, mean_ci, summarise, table, write_csv
from search.scenarios import ACTIVATIONS

__all__ = ["CURES", "METRICS", "mean_ci", "run_compare", "summarise", "table"]
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
    from search.scenarios import load
    from search.tracking import Tracker, resolve_tracking_uri, ui_command

    data, x_test, y_test = load(scenario, dataset, limit)
    epochs = epochs or scenario.epochs
    uri = resolve_tracking_uri(tracking_uri)
    tracker = Tracker(uri, f"compare-{scenario.name}")
    params = {"scenario": scenario.name, "variants": list(chosen), "seeds": seeds,
              "epochs": epochs, "batch_size": scenario.batch_size, "limit": limit,
              "dataset": dataset, "backend": keras.backend.backend(), **scenario.config}
    tracker.start_parent(params, tags={"kind": "compare", "scenario": scenario.name})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tracker.client.update_run(tracker.parent_id, name=f"compare-{scenario.name}-{stamp}")
    try:
        with signals.sigterm_as_interrupt():
            runs = _train_all(scenario, chosen, seeds, epochs, data, (x_test, y_test),
                              tracker, out)
            rows = summarise(runs, chosen)
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


def _train_all(scenario, chosen, seeds, epochs, data, test, tracker, out):
    """One trial-runner run per (seed, variant), each a child run with its test accuracy."""
    from search.scenarios import builder
    from search.trial import TrialSettings, freeze_long_lived_objects, run_trial

    build = builder(scenario)
    freeze_long_lived_objects()
    runs, started = [], time.monotonic()
    for seed in range(seeds):
        for variant, changes in chosen.items():
            accuracy = _TestAccuracy(*test)
            settings = TrialSettings(epochs=epochs, batch_size=scenario.batch_size, seed=seed)
            result = run_trial({**scenario.config, **changes}, data, settings,
                               number=0, engine="compare", tracker=tracker,
                               callbacks=[accuracy.callback], build=build)
            run = {"index": len(runs), "variant": variant, "seed": seed,
                   "state": result.state, "test_accuracy": accuracy.value,
                   "dead_fraction": _last(result.history, "dead_fraction"),
                   "dormant_fraction": _last(result.history, "dormant_fraction"),
                   "run_id": result.run_id}
            runs.append(run)
            tracker.submit(_finish_child, tracker, run)
            out(f"{variant:<16} seed {seed}: {result.state}, test accuracy "
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
    # MLflow keys take no "+": relu+redo is logged as relu-redo
    tracker.log(tracker.parent_id, metrics={f"{k}/{r['variant'].replace('+', '-')}": r[k]
                                            for r in rows
                                            for k in (f"{m}_mean" for m in METRICS)})
    tracker.client.log_text(tracker.parent_id, table(rows) + "\n", f"{name}.txt")


def _finish_child(tracker, run):
    """Name the child `<variant>-seed<k>` and add the test accuracy (writer thread)."""
    run_id = run["run_id"]
    tracker.client.update_run(run_id, name=f"{run['variant']}-seed{run['seed']}")
    tracker.log(run_id, metrics={"test_accuracy": run["test_accuracy"]},
                tags={"variant": run["variant"], "seed": run["seed"],
                      "trial_number": run["index"]})


def _last(history, key):
    values = history.get(key)
    return float(values[-1]) if values else None


def _show(value):
    return "-" if value is None else f"{value:.3f}"
