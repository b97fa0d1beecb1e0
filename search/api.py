"""`search.run`: one search over the cures, from Python or from `keras-relu search`.

It opens the study (Optuna or KerasTuner) and the MLflow parent run, runs the trials in
this process or in worker processes, logs the search's artifacts, closes the parent run
and returns a `SearchResult`. Bad input raises `UsageError` before anything is created;
an interruption or a failure closes the parent run KILLED or FAILED and is re-raised.
"""

import contextlib
import dataclasses

from search import recovery, runtime, stores
from search.report import TrialSummary
from search.settings import SearchSettings
from search.tracking import resolve_tracking_uri

_SETTINGS = {f.name for f in dataclasses.fields(SearchSettings)}


@dataclasses.dataclass
class SearchResult:
    """What a search leaves: its best trials, this invocation's trials, where they are.

    Attributes:
        best: the best trials of the whole study, best first (the Pareto front, in trial
            order, for `objective="pareto"`), as `TrialSummary` (config, val_accuracy,
            dead_fraction, run_id).
        trials: every trial this invocation ran, in the order they ended.
        study_name, engine, objective: the study.
        storage: where the study lives (a password masked).
        tracking_uri, parent_run_id: the MLflow store and this search's parent run.
        total_trials: the study's ended trials, earlier invocations' included.
    """

    best: list
    trials: list
    study_name: str
    engine: str
    objective: str
    storage: str
    tracking_uri: str
    parent_run_id: str
    total_trials: int

    def table(self):
        from search.report import table

        return table(self.best)

    def report(self):
        """The lines `keras-relu search` prints at the end."""
        from search.tracking import ui_command

        title = "Pareto front:" if self.objective == "pareto" else "Best trials:"
        return (f"study {self.study_name!r}: {len(self.trials)} new trials, "
                f"{self.total_trials} in all ({self.storage})\n{title}\n{self.table()}\n"
                f"MLflow runs: {ui_command(self.tracking_uri)}")


def run(dataset="digits", *, data=None, validation_data=None, space=None, fix=(), choices=(),
        engine="optuna", tuner=None, pruner=None, objective="accuracy", trials=20,
        timeout=None, epochs=5, batch_size=64, seed=0, study_name=None, storage=None,
        tracking_uri=None, workers=None, devices=None, backend=None, mixed_precision=False,
        overwrite=False, samples=2000, features=20, classes=4, progress=True):
    """Search the cures for dying ReLU; every trial is an MLflow child run.

    Args:
        dataset: `digits` (bundled), `synthetic`, `mnist`, `fashion_mnist`, `cifar10` or
            `npz:PATH`; ignored when `data` is given.
        data, validation_data: in-memory arrays `(x, y)` instead of a named data set
            (validation: 20% of `data`, split by seed, unless given).
        space: a `search.Space`, a space file's path, or its mapping (see
            `search.dims`); default `search.default_space()`.
        fix, choices: `"name=value"` / `"name=a,b"` strings applied to the space after.
        progress: show a progress bar (terminal or notebook).
        Other arguments: see `search.SearchSettings`; the defaults are the command's.

    Returns:
        A `SearchResult`.

    Raises:
        UsageError: bad input, before any study or run is created.
    """
    options = {k: v for k, v in locals().items() if k in _SETTINGS}
    settings = SearchSettings(**options).check()
    return _Search(settings, space, fix, choices, data, validation_data).run(progress)


class _Search:
    """One invocation: checked input, then study, tracker, trials, report."""

    def __init__(self, settings, space, fix, choices, data, validation_data):
        from search import data as datasets

        if data is None:
            datasets.check_spec(settings.dataset)
        stores.check_tracking_store(resolve_tracking_uri(settings.tracking_uri))  # in seconds
        self.settings = settings
        self.keras = runtime.import_keras(settings.backend)
        self.space = _resolve_space(space, fix, choices)
        if data is not None and settings.worker_count > 1:  # workers load it from a file
            settings.dataset = datasets.save_arrays(data, validation_data, "mlruns/datasets")
            data = None
        if data is not None:
            self.data = datasets.from_arrays(data, validation_data, settings.seed)
            settings.dataset = self.data.name
        else:
            self.data = datasets.load(settings.dataset, settings.seed, settings.samples,
                                      settings.features, settings.classes)
        self.study_name = settings.study_name or datasets.slug(settings.dataset) + (
            "-pareto" if settings.objective == "pareto" else "")

    def run(self, progress):
        from search import engines
        from search.tracking import Tracker

        engine = engines.load(self.settings.engine)
        study = engine.open_search(self.settings, self.study_name, self.space, self.settings.dataset)
        tracker = Tracker(resolve_tracking_uri(self.settings.tracking_uri), self.study_name)
        recovery.close_dead(study, tracker)  # a resume: what a killed search left RUNNING
        self._start_parent(tracker, *engine.describe(self.settings, study))
        try:
            with runtime.sigterm_as_interrupt():
                result = self._trials(engine, study, tracker, progress)
        except BaseException as err:
            with contextlib.suppress(Exception):  # the error itself is what to report
                tracker.finish_parent("KILLED" if isinstance(err, KeyboardInterrupt)
                                      else "FAILED")
            raise
        return result

    def _start_parent(self, tracker, where, chosen):
        s = self.settings
        self.where = where
        tracker.start_parent(
            params={"engine": s.engine, "dataset": s.dataset, "objective": s.objective,
                    **chosen, "trials": s.trials, "timeout": s.timeout, "epochs": s.epochs,
                    "batch_size": s.batch_size, "seed": s.seed,
                    "backend": self.keras.backend.backend(),
                    "mixed_precision": s.mixed_precision, "storage": where},
            tags={"engine": s.engine, "study_name": self.study_name, "kind": "search"})
        tracker.client.log_dict(tracker.parent_id, self.space.to_dict(), "space.json")

    def _trials(self, engine, study, tracker, progress):
        from search.artifacts import log_search_artifacts
        from search.report import Progress, best_summary, table

        s = self.settings
        if s.mixed_precision:
            self.keras.mixed_precision.set_global_policy(runtime.mixed_policy())
        ran = []
        with Progress(s.trials, enabled=progress) as bar:
            def on_trial(study, trial):
                ran.append(TrialSummary.of(trial))
                bar.on_trial(ran[-1])

            if s.worker_count > 1:
                from search import parallel

                engine.store_job(study, {"settings": {**s.to_dict(), "backend":
                                                      self.keras.backend.backend()},
                                         "space": self.space.to_dict(),
                                         "parent_run_id": tracker.parent_id})
                parallel.launch(s.engine, study, s, tracker, on_trial)
            else:
                engine.optimize(study, self.space, self.data, s.trial_settings(), tracker,
                                s.trials, s.timeout, callbacks=[on_trial],
                                worker=runtime.process_id())  # a resume knows if it died
        best = [TrialSummary.of(t) for t in engine.best_trials(study)]
        log_search_artifacts(tracker, engine.as_optuna_study(study))
        tracker.finish_parent("FINISHED", best_summary(best, s.objective), table(best))
        return SearchResult(best, ran, self.study_name, s.engine, s.objective, self.where,
                            tracker.uri, tracker.parent_id, len(engine.finished_trials(study)))


def _resolve_space(space, fix, choices):
    """A `Space` from a Space, a file path or a mapping (None: the default), then fix and
    choices applied."""
    from search.space import Space, default_space
    from search.dims import load_space_file

    if space is None:
        resolved = default_space()
    elif isinstance(space, Space):
        resolved = space
    elif isinstance(space, dict):
        resolved = default_space().with_overrides(space, "space")
    else:
        resolved = default_space().with_overrides(load_space_file(space), f"space file {space}")
    return resolved.with_cli(fix, choices)
