"""Several worker processes on one study: a launcher per engine over `search.runtime`,
and the one start-up of `keras-relu worker` (`search.parallel.worker`)."""

import importlib


def launch(engine, study, settings, tracker, on_trial):
    """Run `settings.trials` trials of `study` in `settings.worker_count` local workers,
    calling `on_trial(study, trial)` for each trial they end."""
    importlib.import_module(f"search.parallel.{engine}").launch(study, settings, tracker,
                                                                on_trial)
