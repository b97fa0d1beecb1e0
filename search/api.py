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
from search.result import SearchResult
from search.settings import SearchSettings
from search.tracking import resolve_tracking_uri

_SETTINGS = {f.name for f in dataclasses.fields(SearchSettings)}


def run(dataset="digits", *, data=None, validation_data=None, test_data=None, model=None,
        space=None, fix=(), choices=(), metric="val_accuracy", direction=None,
        loss=None, metrics=None, prune_dead_above=None, controls=True, engine="optuna",
        tuner=None, pruner=None, sampler=None, objective="accuracy", trials=20, timeout=None,
        epochs=5, batch_size=64, seed=0, trial_seed=None, study_name=None, storage=None,
        tracking_uri=None, workers=None, devices=None, trials_per_process=None, backend=None,
        mixed_precision=False, overwrite=False, reinitialize=False, steps_per_epoch=None,
        num_classes=None, image_size=None, samples=2000, features=20, classes=4,
        progress=True):
    """Search the cures for dying ReLU on a model; every trial is an MLflow child run.

    Args:
        dataset: `digits` (bundled), `synthetic`, `mnist`, `fashion_mnist`, `cifar10`,
            `npz:PATH`, `images:DIR` (a folder of class sub-folders, streamed) or
            `data:module:function` (a function returning `(train, validation[, test])`);
            ignored when `data` is given.
        data, validation_data, test_data: the data as you have it instead of a named data
            set: arrays `(x, y)` (test, then validation: 20% each, cut off by seed, unless
            given), or pipelines: `tf.data.Dataset`, `keras.utils.PyDataset`, torch
            `DataLoader`, or zero-argument functions returning one (called per trial).
            Pipelines need `validation_data`; without `test_data` there is no held-out
            score. A generator is refused (Keras replays only two batches of it).
        model: the model: a builder `build(cures, input_shape, num_classes)` (see
            `search.builders`), a factory `make(input_shape, num_classes)`, a
            `keras.Model`, or a reference `module:function` / `file.py:function` /
            `file.keras`; None: the built-in MLP / CNN. A factory's, file's or object's
            ReLUs are swapped for the trial's activation (see `search.finished`).
        reinitialize: start a `.keras` file's or model object's trials from fresh weights
            (the trial's initializer) instead of its own.
        space: a `search.Space`, a space file's path, or its mapping (see
            `search.dims`); default `search.default_space()` (without depth and width
            for your own model).
        fix, choices: `"name=value"` / `"name=a,b"` strings applied to the space after.
        metric, direction: the objective (a key the model logs; default val_accuracy)
            and `maximize` / `minimize` (default: minimize a loss or error).
        loss, metrics: compile arguments, for a model that is not a plain classifier
            (then the targets are used as given).
        prune_dead_above: prune a trial once its dead fraction is above this fraction.
        steps_per_epoch, num_classes: pipelines: what their first batches cannot tell.
        image_size: `images:DIR`: (height, width), default the first image's.
        seed, trial_seed: the data split (and the samplers); trial N trains with seed + N,
            or with `trial_seed` when given (what `search.retrain` sets).
        controls: start a new Optuna study with the control trials (see
            `search.space.CONTROLS`; only where the space has them).
        progress: show a progress bar (terminal or notebook).
        Other arguments: see `search.SearchSettings`; the defaults are the command's.

    Returns:
        A `SearchResult`.

    Raises:
        UsageError: bad input, before any study or run is created.
    """
    from search.noise import hide_false_alarms

    options = {k: v for k, v in locals().items() if k in _SETTINGS and k != "model"}
    settings = SearchSettings(**options).check()
    search = _Search(settings, model, space, fix, choices, (data, validation_data, test_data))
    with hide_false_alarms():
        return search.run(progress)


class _Search:
    """One invocation: checked input, then study, tracker, trials, winner."""

    def __init__(self, settings, model, space, fix, choices, arrays):
        from search import data as datasets
        from search import winner
        from search.models import check_builder, load_builder, reference
        from search.sources import from_sources, is_pipeline, load
        from search.noise import hide_false_alarms

        if arrays[0] is None:
            datasets.check_spec(settings.dataset)
        tracking_uri = resolve_tracking_uri(settings.tracking_uri)
        stores.check_tracking_store(tracking_uri)  # in seconds
        stores.check_separate(settings.storage, tracking_uri)
        if (settings.storage or "").startswith("grpc://"):
            stores.check_proxy(settings.storage)  # before the backend's import
        self.settings = settings
        # A device list pins each worker to its GPU (CUDA_VISIBLE_DEVICES), even a lone one.
        pinned = settings.worker_count > 1 or bool(runtime.parse_devices(settings.devices))
        if pinned:
            runtime.share_gpus()  # before this process's backend takes a GPU's memory
        self.keras = runtime.import_keras(settings.backend)
        if settings.devices:
            runtime.check_devices(settings.devices)  # a word if there is no such GPU
        from search.finished import applicable  # Keras (keras_relu) after the backend is set
        from search.space import resolve_space

        self.build = load_builder(model, settings.reinitialize)
        self.model, self.model_record = model, winner.model_record(model)  # best.yaml's
        self.space = applicable(resolve_space(space, fix, choices, model_dims=model is None),
                                self.build, settings.reinitialize)
        streamed = any(is_pipeline(a) for a in arrays)
        if streamed and pinned:
            raise UsageError("--workers/--devices: each worker loads the data in its own "
                             "process; give pipelines through a function, "
                             "dataset='data:module:function' (--data module:function), not "
                             "as objects")
        self.in_workers = pinned or self._renews_its_process(model, streamed)
        if self.in_workers:  # workers import the builder and load the data
            settings.model = reference(model)
            if arrays[0] is not None:
                settings.dataset = datasets.save_arrays(*arrays, "mlruns/datasets")
                arrays = (None,) * 3
        if arrays[0] is not None:
            self.data = from_sources(*arrays, seed=settings.seed,
                                     targets=settings.loss is not None,
                                     steps_per_epoch=settings.steps_per_epoch,
                                     num_classes=settings.num_classes)
            settings.dataset = self.data.name
        else:
            self.data = load(settings.dataset, **settings.data_options())
        with hide_false_alarms():
            check_builder(self.build, self.space.example(), self.data, settings.loss,
                          settings.metrics, settings.metric)
        self.study_name = settings.study_name or datasets.slug(settings.dataset) + (
            "-pareto" if settings.objective == "pareto" else "")

    def _renews_its_process(self, model, streamed=False):
        """Whether a search of one process runs in a worker, renewed every
        `trials_per_process` trials (on TensorFlow, whose memory grows with every fit);
        not for pipelines given as objects (no other process can have them)."""
        from search.models import reference

        s = self.settings
        backend = self.keras.backend.backend()
        if s.engine != "optuna" or not runtime.renews_one_process(s.trials,
                                                                  s.trials_per_process, backend):
            return False
        limit = runtime.trials_per_process(s.trials_per_process, backend)
        try:
            if streamed:
                raise UsageError("pipelines given as objects stay in this process")
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
                    "model": self.model_record,
                    **chosen, "trials": s.trials, "timeout": s.timeout, "epochs": s.epochs,
                    "batch_size": s.batch_size, "seed": s.seed, "trial_seed": s.trial_seed,
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
            if s.dataset.startswith("pipeline-"):
                raise UsageError("its data are pipelines in the memory of the search's "
                                 "process; give them as dataset='data:module:function'")
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
                tracker, best[0], self.data, s, self.model_record, self.keras.backend.backend(),
                best)
        columns = searched(self.space)
        log_search_artifacts(tracker, engine.as_optuna_study(study))
        tracker.finish_parent("FINISHED", best_summary(best, s.metric),
                              table(best, columns, s.metric))
        return SearchResult(best, ran, scores, model_uri,
                            str(config_path) if config_path else None, self.study_name,
                            s.engine, s.objective, s.metric, self.where, tracker.uri,
                            tracker.parent_id, len(finished), columns, self.data.has_test,
                            tuple(one_per_control(TrialSummary.of(t) for t in finished)))
