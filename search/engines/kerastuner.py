"""The KerasTuner engine: the space as `keras_tuner.HyperParameters`, KerasTuner's tuners,
each trial run by the shared trial runner.

KerasTuner's own RandomSearch, BayesianOptimization and Hyperband with `run_trial`
replaced: the trial's values become a config and `search.trial.run_trial` builds, fits
(DeadNeuronMonitor in place) and logs it; the oracle gets val_accuracy back. The project
directory (`mlruns/keras_tuner/<study>`) holds the oracle's state, so the same study name
resumes it. Hyperband's later rounds retrain their configuration from scratch for
`tuner/epochs` epochs (the trial runner does not resume weights); the child run of every
trial is tagged with its `trial_id`, the tuner and Hyperband's `tuner/*` values.
"""

import contextlib
import dataclasses
import enum
import io
import json
import pathlib
import sys
import time

import keras_tuner

from search import UsageError
from search.space import Choice, Fixed, Float, Int
from search.tracking import MLRUNS

ENGINE = "kerastuner"
OBJECTIVE = keras_tuner.Objective("val_accuracy", direction="max")
PROJECTS = pathlib.Path(MLRUNS) / "keras_tuner"  # under the working directory
STUDY_FILE = "study.json"  # what the project was made for: tuner, dataset, epochs


def hyperparameters(space):
    """`keras_tuner.HyperParameters` declaring every dimension of `space`, in order;
    a conditional dimension gets KerasTuner's `parent_name`/`parent_values`."""
    hp = keras_tuner.HyperParameters()
    for dim in space:
        when = {} if dim.when is None else {"parent_name": dim.when[0],
                                            "parent_values": list(dim.when[1])}
        if isinstance(dim, Fixed):
            hp.Fixed(dim.name, dim.value, **when)
        elif isinstance(dim, Choice) and all(isinstance(v, bool) for v in dim.values):
            hp.Boolean(dim.name, **when)  # hp.Choice would turn False/True into 0/1
        elif isinstance(dim, Choice):
            hp.Choice(dim.name, list(dim.values), **when)
        elif isinstance(dim, (Float, Int)):
            kind = hp.Float if isinstance(dim, Float) else hp.Int
            kind(dim.name, dim.low, dim.high, sampling="log" if dim.log else "linear", **when)
        else:
            raise TypeError(f"no KerasTuner translation for {type(dim).__name__}")
    return hp


def config_of(space, values):
    """The config of a trial's `values`: each active dimension in declaration order."""
    config = {}
    for dim in space:
        if dim.active(config):
            config[dim.name] = values[dim.name]
    return config


class State(enum.Enum):  # named like Optuna's TrialState, valued like KerasTuner's
    COMPLETE = "COMPLETED"
    FAIL = "FAILED"


@dataclasses.dataclass
class TrialRecord:
    """An ended KerasTuner trial as `search.report` reads trials: number, state, user_attrs
    (config, val_accuracy, dead_fraction, reason, run_id)."""

    number: int
    state: State
    user_attrs: dict

    def as_dict(self):
        """The record as `search.artifacts.study_from_trials` takes it."""
        state = "complete" if self.state is State.COMPLETE else "failed"
        return {"number": self.number, "state": state, **self.user_attrs}


def record(space, trial, run_id=None):
    """The `TrialRecord` of an ended KerasTuner trial (None if it has not ended)."""
    if trial.status not in {s.value for s in State}:
        return None
    attrs = {"config": config_of(space, trial.hyperparameters.values)}
    for key in ("val_accuracy", "dead_fraction"):
        if trial.metrics.exists(key):
            attrs[key] = trial.metrics.get_last_value(key)
    if trial.message:  # a traceback; its last line ends with the reason
        attrs["reason"] = trial.message.strip().splitlines()[-1].partition(": ")[2]
    if run_id:
        attrs["run_id"] = run_id
    return TrialRecord(int(trial.trial_id), State(trial.status), attrs)


class _TaggedTracker:
    """The search's tracker, adding one trial's tags to the child run it starts."""

    def __init__(self, tracker, tags):
        self._tracker, self._tags = tracker, tags

    def start_child(self, trial_number, engine, params):
        run = self._tracker.start_child(trial_number, engine, params)
        self._tracker.submit(lambda: self._tracker.log(run.run_id, tags=self._tags))
        return run


@dataclasses.dataclass
class _Job:
    """What `optimize` hands the tuner for its trials."""

    study: "Study"
    data: object
    settings: object
    tracker: object
    deadline: float | None
    callbacks: tuple
    run_ids: dict = dataclasses.field(default_factory=dict)  # trial_id -> MLflow run


class _SharedTrialRunner:
    """Mixed into a KerasTuner tuner: trials run through `search.trial.run_trial`."""

    job = None  # set by `optimize`

    def pre_create_trial(self):
        if self.job.deadline is not None and time.monotonic() > self.job.deadline:
            self.oracle.max_trials = len(self.oracle.trials)  # the oracle then stops

    def run_trial(self, trial, *args, **kwargs):
        from search.trial import run_trial

        job, values = self.job, trial.hyperparameters.values
        hyperband = {k: v for k, v in values.items() if k.startswith("tuner/")}
        settings = job.settings
        if "tuner/epochs" in hyperband:
            settings = dataclasses.replace(settings, epochs=int(hyperband["tuner/epochs"]))
        tags = {"tuner": job.study.tuner_name, "trial_id": trial.trial_id, **hyperband}
        tracker = _TaggedTracker(job.tracker, tags) if job.tracker else None
        try:
            result = run_trial(config_of(job.study.space, values), job.data, settings,
                               number=int(trial.trial_id), engine=ENGINE, tracker=tracker)
        except Exception as err:  # a bug, not a bad configuration: stop the search
            raise keras_tuner.errors.FatalError(f"{type(err).__name__}: {err}") from err
        job.run_ids[trial.trial_id] = result.run_id
        if result.state == "failed":
            raise keras_tuner.errors.FailedTrialError(result.reason)
        return {k: getattr(result, k) for k in ("val_accuracy", "dead_fraction")
                if getattr(result, k) is not None}

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        done = self.job.study.record(self.oracle.get_trial(trial.trial_id))
        for callback in self.job.callbacks if done else ():
            callback(self.job.study, done)


class RandomSearch(_SharedTrialRunner, keras_tuner.RandomSearch):
    """KerasTuner's RandomSearch over the shared trial runner."""


class BayesianOptimization(_SharedTrialRunner, keras_tuner.BayesianOptimization):
    """KerasTuner's BayesianOptimization over the shared trial runner."""


class Hyperband(_SharedTrialRunner, keras_tuner.Hyperband):
    """KerasTuner's Hyperband (factor 3, at most --epochs per trial) over the trial runner."""


TUNERS = {"random": RandomSearch, "bayesian": BayesianOptimization, "hyperband": Hyperband}


class Study:
    """A KerasTuner project as the CLI drives it: its tuner and the space it searches."""

    def __init__(self, tuner, tuner_name, space):
        self.tuner, self.tuner_name, self.space = tuner, tuner_name, space

    @property
    def directory(self):
        return pathlib.Path(self.tuner.project_dir)

    @property
    def trials(self):
        """Every ended trial (earlier invocations' too) as `TrialRecord`s, in trial order."""
        ended = (self.record(t) for t in self.tuner.oracle.trials.values())
        return sorted((r for r in ended if r), key=lambda r: r.number)

    def record(self, trial):
        """The `TrialRecord` of one of the tuner's trials (None while it runs)."""
        job = self.tuner.job
        return record(self.space, trial, job.run_ids.get(trial.trial_id) if job else None)


def project_dir(study_name):
    return (pathlib.Path.cwd() / PROJECTS / study_name).resolve()


def open_study(tuner_name, study_name, space, dataset, epochs, seed=0, overwrite=False):
    """KerasTuner's tuner `tuner_name` on a new project `study_name`, or resuming it
    (refused if it was made for another tuner, dataset, space or Hyperband budget)."""
    if tuner_name not in TUNERS:
        raise UsageError(f"unknown tuner {tuner_name!r}; valid: {', '.join(TUNERS)}")
    if study_name in ("", ".", "..") or pathlib.PurePath(study_name).name != study_name:
        raise UsageError(f"--study-name {study_name!r} must be a plain name, not a path")
    folder = project_dir(study_name)
    made_for = {"tuner": tuner_name, "dataset": dataset,
                **({"epochs": epochs} if tuner_name == "hyperband" else {})}
    resume = not overwrite and folder.exists()
    if resume:
        _check_resumable(study_name, folder, made_for)
    hp = hyperparameters(space)
    budget = ({"max_epochs": epochs, "factor": 3, "hyperband_iterations": None}
              if tuner_name == "hyperband" else {"max_trials": 1})  # max_trials: see optimize
    with contextlib.redirect_stdout(io.StringIO()):  # "Reloading Tuner from ..."
        tuner = TUNERS[tuner_name](
            objective=OBJECTIVE, hyperparameters=hp, allow_new_entries=False,
            # KerasTuner draws a random seed for seed 0; failed trials never stop a search.
            seed=seed + 1 if seed >= 0 else seed, max_consecutive_failed_trials=sys.maxsize,
            directory=str(folder.parent), project_name=folder.name, overwrite=overwrite,
            **budget,
        )
    oracle = getattr(tuner.oracle, "_oracle", tuner.oracle)  # a worker's OracleClient wraps it
    saved = oracle.hyperparameters.get_config()["space"]
    if resume and saved != json.loads(json.dumps(hp.get_config()["space"])):
        raise UsageError(f"study {study_name!r} searched another space; keep it, choose "
                         "another --study-name or pass --overwrite")
    tuner.save()  # the oracle's space, so that a later run can check it
    (folder / STUDY_FILE).write_text(json.dumps(made_for))
    return Study(tuner, tuner_name, space)


def _check_resumable(study_name, folder, made_for):
    try:
        old = json.loads((folder / STUDY_FILE).read_text())
    except (OSError, ValueError):
        old = {}
    for key, value in made_for.items():
        if old.get(key, value) != value:
            raise UsageError(f"study {study_name!r} was run with --{key} {old[key]}; "
                             "choose another --study-name or pass --overwrite")


def optimize(study, space, data, settings, tracker=None, n_trials=None, timeout=None,
             callbacks=()):
    """Run `n_trials` more trials (or until `timeout`) through the shared trial runner;
    each callback is called as `callback(study, TrialRecord)` after every trial.
    (`space` is the study's: the signature is the Optuna engine's.)"""
    from search.trial import freeze_long_lived_objects

    tuner = study.tuner
    deadline = time.monotonic() + timeout if timeout else None
    tuner.job = _Job(study, data, settings, tracker, deadline, tuple(callbacks))
    tuner.oracle.max_trials = len(tuner.oracle.trials) + n_trials if n_trials else None
    freeze_long_lived_objects()
    tuner.search(verbose=0)


def best_trials(study, limit=5):
    """The `limit` best complete trials, best first, as `TrialRecord`s."""
    best = study.tuner.oracle.get_best_trials(limit)
    return [study.record(t) for t in best if t.status == State.COMPLETE.value]


def as_optuna_study(study):
    """The trials in an in-memory Optuna study, for `search.artifacts`' CSV and plots."""
    from search.artifacts import study_from_trials

    return study_from_trials([r.as_dict() for r in study.trials], study.space)
