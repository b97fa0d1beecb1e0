"""Search engines behind one small interface, one module each (`optuna`, `kerastuner`).

Each module offers: `open_search(settings, study_name, space, dataset)`, `describe(settings,
study)`, `optimize(study, space, data, trial_settings, tracker, n_trials, timeout,
callbacks, worker)`, `best_trials(study)`, `finished_trials(study)`, `as_optuna_study(study)`,
and for workers `store_job(study, job)` and `join_study(study_name, storage_url)`.
"""

import importlib

from search.names import ENGINES


def load(name):
    """The engine module called `name` (imported now: it brings its library)."""
    if name not in ENGINES:
        from search import UsageError

        raise UsageError(f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
    return importlib.import_module(f"search.engines.{name}")
