"""`search.run`: one search over the cures, from Python or from `keras-relu search`.

It opens the study (Optuna or KerasTuner) and the MLflow parent run, runs the trials in
this process or in worker processes, logs the search's artifacts, closes the parent run
and returns a `SearchResult`. Bad input raises `UsageError` before anything is created;
an interruption or a failure closes the parent run KILLED or FAILED and is re-raised.
"""

import contextlib
import dataclasses
import warnings

from search import UsageError, recovery, runtime, signals, stores
from search.identity import data_identity
from search.report import TrialSummary
from search.settings import SearchSettings
from search.tracking import resolve_tracking_uri

_SETTINGS = {f.name for f in dataclasses.fields(SearchSettings)}


@dataclasses.dataclass
class SearchResult:
    """What a search leaves: the winner, this invocation's trials, where everything is.

    Attributes:
        best: the best trials of the whole study, best first (for `objective="pareto"`,
            the Pareto front by the metric), as `TrialSummary` (config, value,
            val_accuracy, dead_fraction, run_id, model_uri).
        trials: every trial this invocation ran, in the order they ended.
        test_scores: the best model's scores on the held-out test split (evaluated once).
        model_uri: the best model (`models:/m-...`; `best_model()` loads it).
        best_config: the local `best.yaml` (every dimension fixed to the best config).
        study_name, engine, objective, metric: the study.
        storage: where the study lives (a password masked).
        tracking_uri, parent_run_id: the MLflow store and this search's parent run.
        total_trials: the study's ended trials, earlier invocations' included.
    """

    best: list
    trials: list
    test_scores: dict
    model_uri: str | None
    best_config: str | None
    study_name: str
    engine: str
    objective: str
    metric: str
    storage: str
    tracking_uri: str
    parent_run_id: str
    total_trials: int
    columns: tuple = ()
    controls: tuple = ()  # the study's control trials, one per label (all invocations)

    def best_model(self):
        """The best trial's fitted model, loaded through MLflow's Keras flavour."""
        import mlflow

        from search.tracking import mlflow_uri

        mlflow.set_tracking_uri(mlflow_uri(self.tracking_uri))
        if not self.model_uri:
            raise ValueError(f"study {self.study_name!r} has no logged best model")
        return mlflow.keras.load_model(self.model_uri)

    def table(self):
        from search.report import table

        return table(self.best, self.columns, self.metric)

    def report(self):
        """The lines `keras-relu search` prints at the end."""
        from search.tracking import ui_command

        from search.report import controls

        title = "Pareto front:" if self.objective == "pareto" else "Best trials:"
        lines = [f"study {self.study_name!r}: {len(self.trials)} new trials, "
                 f"{self.total_trials} in all ({self.storage})", title, self.table()]
        lines += [text for text in [controls(self.controls, self.metric)] if text]
        if self.best and self.best[0].value is not None:
            top, test = self.best[0], self.metric.removeprefix("val_")
            held_out = (f", {test} {self.test_scores[test]:.4g} on the held-out test split"
                        if test in self.test_scores else "")
            lines.append(f"Best: trial {top.number}, {self.metric} {top.value:.4g}{held_out}")
            lines.append(f"Model: {self.model_uri or '-'}  config: {self.best_config or '-'}")
        lines.append(f"MLflow runs: {ui_command(self.tracking_uri)}")
        return "\n".join(lines)


def run(dataset="digits", *, data=None, validation_data=None, test_data=None, model=None,
        space=None, fix=(), choices=(), metric="val_accuracy", direction=None,
        loss=None, metrics=None, prune_dead_above=None, controls=True, engine="optuna", tuner=None, pruner=None, sampler=None,
        objective="accuracy", trials=20, timeout=None, epochs=5, batch_size=64, seed=0,
        study_name=None, storage=None, tracking_uri=None, workers=None, devices=None,
        trials_per_process=None, backend=None, mixed_precision=False, overwrite=False,
        samples=2000, features=20, classes=4, progress=True):
    """Search the cures for dying ReLU on a model; every trial is an MLflow child run.

    Args:
        dataset: `digits` (bundled), `synthetic`, `mnist`, `fashion_mnist`, `cifar10` or
            `npz:PATH`; ignored when `data` is given.
        data, validation_data, test_data: in-memory arrays `(x, y)` instead of a named
            data set (test, then validation: 20% each, cut off by seed, unless given).
        model: the model builder `build(cures, input_shape, num_classes)` (see
            `search.builders`), or its reference `module:function` / `file.py:function`;
            None: the built-in MLP / CNN.
        space: a `search.Space`, a space file's path, or its mapping (see
            `search.dims`); default `search.default_space()` (without depth and width
            for your own model).
        fix, choices: `"name=value"` / `"name=a,b"` strings applied to the space after.
        metric, direction: the objective (a key the model logs; default val_accuracy)
            and `maximize` / `minimize` (default: minimize a loss or error).
        loss, metrics: compile arguments, for a model that is not a plain classifier
            (then the targets are used as given).
        prune_dead_above: prune a trial once its dead fraction is above this fraction.
        controls: start a new Optuna study with the control trials (see
            `search.space.CONTROLS`; only where the space has them).
        progress: show a progress bar (terminal or notebook).
        Other arguments: see `search.SearchSettings`; the defaults are the command's.

    Returns:
        A `SearchResult`.

    Raises:
        UsageError: bad input, before any study or run is created.
    """
    options = {k: v for k, v in locals().items() if k in _SETTINGS and k != "model"}
    settings = SearchSettings(**options).check()
    return _Search(settings, model, space, fix, choices,
                   (data, validation_data, test_data)).run(progress)


class _Search:
    """One invocation: checked input, then study, tracker, trials, winner."""

    def __init__(self, settings, model, space, fix, choices, arrays):
        from search import data as datasets
        from search.models import check_builder, load_builder, reference

        if arrays[0] is None:
            datasets.check_spec(settings.dataset)
        tracking_uri = resolve_tracking_uri(settings.tracking_uri)
        stores.check_tracking_store(tracking_uri)  # in seconds
        stores.check_separate(settings.storage, tracking_uri)
        self.settings = settings
        self.keras = runtime.import_keras(settings.backend)
        if settings.devices:
            runtime.check_devices(settings.devices)  # a word if there is no such GPU
        self.build, self.model = load_builder(model), model
        from search.space import resolve_space  # (after Keras: it imports keras_relu)

        self.space = resolve_space(space, fix, choices, model_dims=model is None)
        self.in_workers = settings.worker_count > 1 or self._renews_its_process(model)
        if self.in_workers:  # workers import the builder and load the data
            settings.model = reference(model)
            if arrays[0] is not None:
                settings.dataset = datasets.save_arrays(*arrays, "mlruns/datasets")
                arrays = (None,) * 3
        if arrays[0] is not None:
            self.data = datasets.from_arrays(*arrays, seed=settings.seed,
                                             targets=settings.loss is not None)
            settings.dataset = self.data.name
        else:
            self.data = datasets.load(settings.dataset, settings.seed, settings.samples,
                                      settings.features, settings.classes,
                                      targets=settings.loss is not None)
        check_builder(self.build, self.space.example(), self.data, settings.loss,
                      settings.metrics, settings.metric)
        self.study_name = settings.study_name or datasets.slug(settings.dataset) + (
            "-pareto" if settings.objective == "pareto" else "")

    def _renews_its_process(self, model):
        """Whether a search of one process runs in a worker, renewed every
        `trials_per_process` trials (on TensorFlow, whose memory grows with every fit)."""
        from search.models import reference

        s = self.settings
        backend = self.keras.backend.backend()
        if s.engine != "optuna" or not runtime.renews_one_process(s.trials,
                                                                  s.trials_per_process, backend):
            return False
        limit = runtime.trials_per_process(s.trials_per_process, backend)
        try:
            reference(model)
            s.to_dict()
        except UsageError as err:
            warnings.warn(f"the {s.trials} trials run in this process, not in workers renewed "
                          f"every {limit} trials: {err}", stacklevel=4)
            return False
        return True

    def run(self, progress):
        from search import engines
        from search.tracking import Tracker

        engine, tracker = engines.load(self.settings.engine), None
        try:
            with signals.sigterm_as_interrupt():
                with signals.deferred_interrupts():  # the study and parent run made whole
                    study = engine.open_search(self.settings, self.study_name, self.space,
                                               data_identity(self.settings.dataset))
                    tracker = Tracker(resolve_tracking_uri(self.settings.tracking_uri),
                                      self.study_name)
                    recovery.close_dead(study, tracker)  # a resume: what a killed one left
                    self._start_parent(tracker, *engine.describe(self.settings, study))
                return self._trials(engine, study, tracker, progress)
        except BaseException as err:
            if tracker is not None and tracker.parent_id:
                with contextlib.suppress(Exception):  # the error itself is what to report
                    tracker.finish_parent("KILLED" if isinstance(err, KeyboardInterrupt)
                                          else "FAILED")
            raise

    def _start_parent(self, tracker, where, chosen):
        s = self.settings
        self.where = where
        tracker.start_parent(
            params={"engine": s.engine, "dataset": s.dataset, "objective": s.objective,
                    "metric": s.metric, "direction": s.chosen_direction,
                    "model": s.model or getattr(self.build, "__qualname__", "model"),
                    **chosen, "trials": s.trials, "timeout": s.timeout, "epochs": s.epochs,
                    "batch_size": s.batch_size, "seed": s.seed,
                    "backend": self.keras.backend.backend(),
                    "mixed_precision": s.mixed_precision, "storage": where},
            tags={"engine": s.engine, "study_name": self.study_name, "kind": "search"})
        tracker.client.log_dict(tracker.parent_id, self.space.to_dict(), "space.json")

    def _trials(self, engine, study, tracker, progress):
        from search.report import Progress

        s = self.settings
        if s.mixed_precision:
            self.keras.mixed_precision.set_global_policy(runtime.mixed_policy())
        ran = []
        with Progress(s.trials, enabled=progress) as bar:
            def on_trial(study, trial):
                ran.append(TrialSummary.of(trial))
                bar.on_trial(ran[-1])

            engine.store_job(study, self._job(tracker))  # for `keras-relu worker`, any time
            if self.in_workers:
                from search import parallel

                parallel.launch(s.engine, study, s, tracker, on_trial)
            else:
                engine.optimize(study, self.space, self.data, s.trial_settings(), tracker,
                                s.trials, s.timeout, callbacks=[on_trial], build=self.build,
                                worker=runtime.process_id())  # a resume knows if it died
        return self._conclude(engine, study, tracker, ran)

    def _job(self, tracker):
        """What a worker process needs to join the study (settings, space, parent run),
        or why none can (then `keras-relu worker` says so)."""
        from search.models import reference

        s = self.settings
        try:
            if s.dataset.startswith("arrays-"):
                raise UsageError("its data are arrays in the memory of the search's process "
                                 "(search.run(workers=N) saves them for workers)")
            settings = {**s.to_dict(), "model": s.model or reference(self.model),
                        "backend": self.keras.backend.backend()}
        except UsageError as err:
            if self.in_workers:
                raise
            return {"unjoinable": str(err)}
        return {"settings": settings, "space": self.space.to_dict(),
                "parent_run_id": tracker.parent_id}

    def _conclude(self, engine, study, tracker, ran):
        """Rank, evaluate the winner on the test split, log artifacts, close the parent."""
        from search import winner
        from search.artifacts import log_search_artifacts
        from search.report import best_summary, one_per_control, searched, table

        s = self.settings
        finished = engine.finished_trials(study)
        best = [TrialSummary.of(t) for t in engine.best_trials(study)]
        if s.objective == "pareto":  # the front, ranked by the metric
            sign = -1 if s.chosen_direction == "maximize" else 1
            best.sort(key=lambda t: (sign * t.value, t.number))
        scores, config_path, model_uri = {}, None, None
        if best:
            scores, config_path, model_uri = winner.conclude(
                tracker, best[0], self.data, s.batch_size, s.loss, s.metrics)
        columns = searched(self.space)
        log_search_artifacts(tracker, engine.as_optuna_study(study))
        tracker.finish_parent("FINISHED", best_summary(best, s.metric),
                              table(best, columns, s.metric))
        return SearchResult(best, ran, scores, model_uri,
                            str(config_path) if config_path else None, self.study_name,
                            s.engine, s.objective, s.metric, self.where, tracker.uri,
                            tracker.parent_id, len(finished), columns,
                            tuple(one_per_control(TrialSummary.of(t) for t in finished)))
