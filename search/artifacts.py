"""MLflow artifacts: each trial's dead-fraction plot; each search's trials CSV and plots.

Engine-agnostic. The trial runner logs `dead_fraction.png` on every child run (in the
tracker's writer thread, so training does not wait for matplotlib). At the end of a
search every engine calls `log_search_artifacts(tracker, study)` with an
Optuna study: the Optuna engine's own, or for any other engine (KerasTuner) one rebuilt
in memory from its trial records by `study_from_trials`. So every engine's parent run
gets the same `trials.csv` (`study.trials_dataframe()`) and `search_plots.html`
(Optuna's optimisation history, parameter importances and parallel coordinate; one
self-contained page, so plotly.js is stored once per search, not once per plot).
"""

import html
import logging
import os
import pathlib
import tempfile

TRIAL_PLOT = "dead_fraction.png"
TRIALS_CSV = "trials.csv"
SEARCH_PLOTS = "search_plots.html"
_log = logging.getLogger("search.artifacts")


def log_trial_plot(run, history):
    """Queue the PNG of dead fraction per layer over epochs for the child `run`."""
    curves = {k: [float(v) for v in values] for k, values in history.items()
              if k == "dead_fraction" or k.startswith("dead_fraction/")}
    if curves:
        run.tracker.submit(_write_trial_plot, run, curves)


def _write_trial_plot(run, curves):
    try:
        from keras_relu import plot_neuron_history

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, TRIAL_PLOT)
            plot_neuron_history(curves, path)
            run.tracker.client.log_artifact(run.run_id, path)
    except Exception as err:  # a missing plot must not fail the trial
        _log.warning("no %s for run %s: %s", TRIAL_PLOT, run.run_id, err)


def study_from_trials(records, space, objective="accuracy"):
    """An in-memory Optuna study holding another engine's trials, for the same artifacts.

    `records`: dicts with `number`, `state` ("complete" | "pruned" | "failed"), `config`,
    and optionally `val_accuracy`, `dead_fraction`, `run_id`, `reason`.
    """
    import optuna

    from search.engines.optuna import OBJECTIVES, distributions

    states = {"complete": optuna.trial.TrialState.COMPLETE,
              "pruned": optuna.trial.TrialState.PRUNED, "failed": optuna.trial.TrialState.FAIL}
    dists = distributions(space)
    study = optuna.create_study(directions=list(OBJECTIVES[objective]))
    for record in sorted(records, key=lambda r: r["number"]):
        config = record["config"]
        params = {k: v for k, v in config.items() if k in dists}
        state = states[record["state"]]
        values = None
        if state == optuna.trial.TrialState.COMPLETE:
            values = [record["val_accuracy"]]
            if objective == "pareto":
                values.append(record["dead_fraction"])
        attrs = {k: record.get(k) for k in ("val_accuracy", "dead_fraction", "run_id", "reason")}
        study.add_trial(optuna.trial.create_trial(
            state=state, values=values, params=params,
            distributions={k: dists[k] for k in params},
            user_attrs={"config": config, "engine_trial": record["number"],
                        **{k: v for k, v in attrs.items() if v not in (None, "")}}))
    return study


def search_figures(study):
    """Optuna's three plots of `study` by title; a plot that cannot be drawn yet (too few
    complete trials, a single searched parameter) is left out."""
    import optuna
    from optuna import visualization as vis

    target = {"target_name": "val_accuracy"}
    if len(study.directions) > 1:
        target["target"] = lambda t: t.values[0]
    importance = optuna.importance.FanovaImportanceEvaluator(seed=0)
    makers = {
        "Optimisation history": lambda: vis.plot_optimization_history(study, **target),
        "Parameter importances": lambda: vis.plot_param_importances(
            study, evaluator=importance, **target),
        "Parallel coordinate": lambda: vis.plot_parallel_coordinate(study, **target),
    }
    figures = {}
    for title, make in makers.items():
        try:
            figures[title] = make()
        except Exception as err:  # e.g. importances need two complete trials
            _log.info("no %s plot: %s", title, err)
    return figures


def _page(figures):
    parts, first = [], True
    for title, figure in figures.items():
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(figure.to_html(full_html=False, include_plotlyjs=first))
        first = False
    body = "\n".join(parts) or "<p>Not enough complete trials to plot yet.</p>"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Search plots</title>"
            f"</head><body style='font-family:sans-serif'>{body}</body></html>")


def log_search_artifacts(tracker, study):
    """Log `trials.csv` and `search_plots.html` of `study` on the tracker's parent run."""
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        study.trials_dataframe().to_csv(folder / TRIALS_CSV, index=False)
        (folder / SEARCH_PLOTS).write_text(_page(search_figures(study)), encoding="utf-8")
        tracker.client.log_artifacts(tracker.parent_id, str(folder))
