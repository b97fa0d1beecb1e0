"""The KerasTuner engine: the space as `keras_tuner.HyperParameters`, KerasTuner's tuners,
each trial run by the shared trial runner.

KerasTuner's own RandomSearch, BayesianOptimization and Hyperband with `run_trial`
replaced: the trial's values become a config and `search.trial.run_trial` builds, fits
(DeadNeuronMonitor in place) and logs it; the oracle gets val_accuracy back. The project
directory (`mlruns/keras_tuner/<study>`) holds the oracle's state, so the same study name
resumes it; `worker.json` in it holds what a worker needs to join (settings, space,
parent run). Hyperband's later rounds retrain their configuration from scratch for
`tuner/epochs` epochs (the trial runner does not resume weights); the child run of every
trial is tagged with its `trial_id`, the tuner and Hyperband's `tuner/*` values.
"""

import contextlib
import io
import json
import os
import pathlib
import sys
import time

import keras_tuner

from search import UsageError
from search.identity import check_same_data, data_identity
from search.runtime import spread_seed
from search.engines.kt_tuners import (ENGINE, TUNERS, Job, State, TrialRecord, config_of,
                                      hyperparameters, record)
from search.tracking import MLRUNS

__all__ = ["ENGINE", "TUNERS", "State", "TrialRecord", "config_of", "hyperparameters", "open_search",
           "optimize", "best_trials"]
JOB_FILE = "worker.json"
PROJECTS = pathlib.Path(MLRUNS) / "keras_tuner"  # under the working directory
STUDY_FILE = "study.json"  # what the project was made for: tuner, data, budget, metric


class Study:
    """A KerasTuner project as a search drives it: its tuner, space and objective."""

    def __init__(self, tuner, tuner_name, space, metric="val_accuracy", direction="maximize"):
        self.tuner, self.tuner_name, self.space = tuner, tuner_name, space
        self.metric, self.direction = metric, direction

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
        known = job.known.get(trial.trial_id, {}) if job else {}
        return record(self.space, trial, self.metric, **known)


def project_dir(study_name):
    return (pathlib.Path.cwd() / PROJECTS / study_name).resolve()


def open_search(settings, study_name, space, dataset):
    """The tuner of one search: tuner, epochs (Hyperband's budget), seed, objective from
    `settings`."""
    return open_study(settings.chosen_tuner, study_name, space, dataset, settings.epochs,
                      settings.seed, settings.overwrite, settings.metric,
                      settings.chosen_direction, settings.batch_size)


def describe(settings, study):
    """Where the study lives and the engine's own choices."""
    return str(study.directory), {"tuner": study.tuner_name}


def store_job(study, job):
    """Keep what a worker needs (see `search.parallel.worker`) in the project folder."""
    (study.directory / JOB_FILE).write_text(json.dumps(job))


def join_study(study_name, storage_url=None, quiet=False):
    """(study, job) for a chief or worker process (KERASTUNER_TUNER_ID) of `study_name`
    (`quiet`: the signature is the Optuna engine's; KerasTuner runs with verbose=0)."""
    folder = project_dir(study_name)
    try:
        job = json.loads((folder / JOB_FILE).read_text())
    except OSError:
        raise UsageError(f"no {JOB_FILE} in {folder}: start the study with "
                         "`keras-relu search --engine kerastuner --workers N`") from None
    if "unjoinable" in job:
        raise UsageError(f"a worker cannot join study {study_name!r}: {job['unjoinable']}")
    from search.space import Space

    from search.settings import SearchSettings

    settings = SearchSettings.from_dict(job["settings"])
    return open_search(settings, study_name, Space.from_dict(job["space"]),
                       data_identity(settings.dataset)), job


def finished_trials(study):
    """Every ended trial of the project, this invocation's and earlier ones."""
    return study.trials


def open_study(tuner_name, study_name, space, dataset, epochs, seed=0, overwrite=False,
               metric="val_accuracy", direction="maximize", batch_size=None):
    """KerasTuner's tuner `tuner_name` on a new project `study_name`, or resuming it
    (refused if it was made for another tuner, dataset, epochs, batch size, metric or
    space)."""
    if tuner_name not in TUNERS:
        raise UsageError(f"unknown tuner {tuner_name!r}; valid: {', '.join(TUNERS)}")
    if study_name in ("", ".", "..") or pathlib.PurePath(study_name).name != study_name:
        raise UsageError(f"--study-name {study_name!r} must be a plain name, not a path")
    folder = project_dir(study_name)
    made_for = {"tuner": tuner_name, "dataset": dataset, "epochs": epochs, "metric": metric,
                "direction": direction, **({"batch_size": batch_size} if batch_size else {})}
    resume = not overwrite and folder.exists()
    if resume:
        _check_resumable(study_name, folder, made_for)
    hp = hyperparameters(space)
    budget = ({"max_epochs": epochs, "factor": 3, "hyperband_iterations": None}
              if tuner_name == "hyperband" else {"max_trials": 1})  # max_trials: see optimize
    with contextlib.redirect_stdout(io.StringIO()):  # "Reloading Tuner from ..."
        tuner = TUNERS[tuner_name](
            objective=keras_tuner.Objective(metric, "max" if direction == "maximize" else "min"),
            hyperparameters=hp, allow_new_entries=False,
            # Spread (runtime.spread_seed), never 0 (KerasTuner would draw a random seed);
            # failed trials never stop a search.
            seed=spread_seed(seed), max_consecutive_failed_trials=sys.maxsize,
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
    return Study(tuner, tuner_name, space, metric, direction)


def _check_resumable(study_name, folder, made_for):
    try:
        old = json.loads((folder / STUDY_FILE).read_text())
    except (OSError, ValueError):
        old = {}
    for key, value in made_for.items():
        if key == "dataset":
            check_same_data(study_name, old.get(key, value), value)
        elif old.get(key, value) != value:
            raise UsageError(f"study {study_name!r} was run with --{key.replace('_', '-')} "
                             f"{old[key]}, not {value}; choose another --study-name or pass "
                             "--overwrite")


def optimize(study, space, data, settings, tracker=None, n_trials=None, timeout=None,
             callbacks=(), worker=None, build=None):
    """Run `n_trials` more trials (or until `timeout`) through the shared trial runner;
    each callback is called as `callback(study, TrialRecord)` after every trial.
    (`space` is the study's and KERASTUNER_TUNER_ID names a worker: the signature is
    the Optuna engine's.)"""
    from search.trial import freeze_long_lived_objects

    tuner = study.tuner
    deadline = time.monotonic() + timeout if timeout else None
    tuner.job = Job(study, data, settings, tracker, deadline, tuple(callbacks), build)
    if os.environ.get("KERASTUNER_TUNER_ID", "chief") == "chief":  # the oracle's owner
        tuner.oracle.max_trials = trial_budget(tuner.oracle, n_trials)
    freeze_long_lived_objects()
    tuner.search(verbose=0)


def trial_budget(oracle, n_trials):
    """The oracle's max_trials for `n_trials` more runs in this invocation. A trial that an
    interrupted search left running is in the oracle's trials and is run again first
    (KerasTuner's retry queue on reload): it is one of the `n_trials`, or a resumed
    `--trials 6` would run 7."""
    if not n_trials:
        return None
    again = len(getattr(oracle, "_retry_queue", ()))
    return len(oracle.trials) + max(0, n_trials - again)


def best_trials(study, limit=5):
    """The `limit` best complete trials, best first, as `TrialRecord`s."""
    best = study.tuner.oracle.get_best_trials(limit)
    return [study.record(t) for t in best if t.status == State.COMPLETE.value]


def as_optuna_study(study):
    """The trials in an in-memory Optuna study, for `search.artifacts`' CSV and plots."""
    import optuna

    from search.engines.optuna import distributions

    states = {State.COMPLETE: optuna.trial.TrialState.COMPLETE,
              State.FAIL: optuna.trial.TrialState.FAIL}
    dists = distributions(study.space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory"
    converted = optuna.create_study(direction=study.direction)
    for ended in study.trials:
        attrs = ended.user_attrs
        params = {k: v for k, v in attrs["config"].items() if k in dists}
        complete = ended.state is State.COMPLETE
        converted.add_trial(optuna.trial.create_trial(
            state=states[ended.state], values=[attrs["value"]] if complete else None,
            params=params, distributions={k: dists[k] for k in params},
            user_attrs={**{k: v for k, v in attrs.items() if v not in (None, "")},
                        "engine_trial": ended.number}))
    return converted
