"""A search's artifacts on its MLflow parent run: the trials CSV and Optuna's plots.

Engine-agnostic: it takes an Optuna study, the Optuna engine's own or, for KerasTuner,
one rebuilt in memory from its trials (`search.engines.kerastuner.as_optuna_study`). So
every engine's parent run gets the same `trials.csv` (`study.trials_dataframe()`) and
`search_plots.html` (optimisation history, parameter importances and parallel
coordinate; one self-contained page, so plotly.js is stored once per search).
"""

import html
import logging
import pathlib
import tempfile

TRIALS_CSV = "trials.csv"
SEARCH_PLOTS = "search_plots.html"
_log = logging.getLogger("search.artifacts")


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
