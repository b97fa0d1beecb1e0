"""The Optuna engine: the space as `suggest_*` calls, storage, study, pruning, optimize.

Single objective: the chosen metric (validation accuracy unless told otherwise).
Multi-objective ("pareto"): the metric and the dead fraction (minimised); Optuna cannot
prune those, so no pruner.
What a worker needs to join (settings, space, parent run) is the study's `search`
user attribute; the data it was run on, its `dataset` attribute (`search.identity`).
Storages are opened by `search.engines.optuna_storage`.
"""

import logging
import os
import re

import optuna

from search import UsageError
from search.identity import check_same_data, data_identity
from search.engines.optuna_space import distributions, make_pruner, make_sampler, suggest
from search.engines.optuna_heartbeat import ProxyHeartbeat, optimize_with
from search.engines.optuna_storage import (DEFAULT_STORAGE, DIED_WITH, HEARTBEAT,  # noqa: F401
                                           MAX_RETRY, fail_and_retry, is_proxy, mark_died,
                                           open_storage, retry_callback)
from search.runtime import spread_seed
from search.signals import stop_reason
from search.secrets import mask_text
from search.store_health import StoreLost

ENGINE = "optuna"
JOB_ATTR = "search"  # the study user attribute holding a worker's job
OUTCOME = "outcome"  # a trial's user attribute once it ran to its end: complete|pruned|failed


class TrialFailed(RuntimeError):
    """A trial that failed in a way the study survives (e.g. a NaN loss)."""


def open_search(settings, study_name, space, dataset):
    """The study of one search: storage, objective, seed, sampler and pruner from
    `settings`; a resumed study must have been run with the same data and budget."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(settings.storage)
    made_for = {"epochs": settings.epochs, "batch_size": settings.batch_size,
                "metric": settings.metric}
    study = open_study(study_name, storage, settings.objective, space, dataset, settings.seed,
                       make_pruner(settings.chosen_pruner, settings.epochs),
                       settings.chosen_sampler, settings.chosen_direction, made_for)
    if settings.controls:
        enqueue_controls(study, space)
    return study


def enqueue_controls(study, space):
    """Queue the control trials of `search.space.CONTROLS` that are configs of `space`
    (each tagged with its `control` label): all of them on a new study; on a resumed study
    that began with them, each one that never ran to its end (interrupted, or its process
    killed) and is not waiting or running."""
    from search.space import CONTROLS

    trials = study.get_trials(deepcopy=False)
    if trials and not any("control" in t.user_attrs for t in trials):
        return  # made without controls (--no-controls): none in the middle of it
    there = {t.user_attrs["control"] for t in trials if "control" in t.user_attrs
             and _ran_or_will_run(t)}
    searched = distributions(space)
    for label, config in CONTROLS.items():
        if label not in there and space.contains(config):
            study.enqueue_trial({k: v for k, v in config.items() if k in searched},
                                user_attrs={"control": label})


def _ran_or_will_run(trial):
    """Whether a trial ran to its end (whatever its outcome), waits in the queue, or runs
    in a live process."""
    from search.recovery import is_dead

    state = optuna.trial.TrialState
    if trial.state in (state.COMPLETE, state.PRUNED, state.WAITING) \
            or OUTCOME in trial.user_attrs:
        return True
    since = trial.datetime_start.timestamp() if trial.datetime_start else None
    return trial.state == state.RUNNING and not is_dead(trial.user_attrs.get("worker"), since)


def describe(settings, study):
    """Where the study lives (password masked) and the engine's own choices."""
    return mask_text(settings.storage_url), {"pruner": settings.chosen_pruner,
                                            "sampler": settings.chosen_sampler}


def store_job(study, job):
    """Keep what a worker needs (see `search.parallel.worker`) in the study itself."""
    study.set_user_attr(JOB_ATTR, job)


def join_study(study_name, storage_url, quiet=False):
    """(study, job) for a worker joining `study_name`: its own sampler seed, the pruner;
    `quiet`: Optuna logs warnings only."""
    if quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    try:
        attrs = optuna.load_study(study_name=study_name, storage=storage).user_attrs
    except KeyError:
        raise UsageError(f"no study {study_name!r} in {mask_text(storage_url)}") from None
    job = attrs.get(JOB_ATTR)
    if job is None:  # made by another program, or by a version that stored none
        raise UsageError(f"study {study_name!r} records no settings for a worker: resume "
                         f"it once with `keras-relu search --study-name {study_name} "
                         "--storage ...` (which records them), then start the worker")
    if "unjoinable" in job:
        raise UsageError(f"a worker cannot join study {study_name!r}: {job['unjoinable']}")
    settings = job["settings"]
    identity = data_identity(settings["dataset"])  # this machine's copy: the study's data?
    check_same_data(study_name, attrs.get("dataset", identity), identity)
    multi = settings["objective"] == "pareto"
    study = optuna.load_study(
        study_name=study_name, storage=storage,
        sampler=make_sampler(settings.get("sampler") or "tpe",
                             spread_seed(settings["seed"], os.getpid())),
        pruner=optuna.pruners.NopPruner() if multi else
        make_pruner(settings.get("pruner") or "median", settings["epochs"]))
    return study, job


def finished_trials(study):
    """Every finished trial of the study, this invocation's and earlier ones."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]


def as_optuna_study(study):
    return study


_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "metric": "--metric"}


def open_study(name, storage, objective, space, dataset, seed=0, pruner=None, sampler="tpe",
               direction="maximize", made_for=None):
    """Create or resume study `name`; refuse one made for another objective, data, budget
    (`made_for`: epochs, batch_size, metric) or space."""
    directions = (direction,) if objective == "accuracy" else (direction, "minimize")
    made_for = {"dataset": dataset, **(made_for or {})}
    try:
        previous = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        previous = None
    if previous is not None:
        _check_resumable(previous, directions, space, made_for)
    count = len(previous.trials) if previous else 0
    study = optuna.create_study(
        study_name=name, storage=storage, directions=list(directions), load_if_exists=True,
        # A resumed study gets a new seed, or it would replay its first trials; spread, or
        # --seed 0 resumed after 5 trials would replay --seed 5's.
        sampler=make_sampler(sampler, spread_seed(seed, count)),
        pruner=pruner if len(directions) == 1 and pruner is not None else optuna.pruners.NopPruner(),
    )
    for key, value in made_for.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    return study


def _check_resumable(study, directions, space, made_for):
    name = study.study_name
    wanted = [getattr(optuna.study.StudyDirection, d.upper()) for d in directions]
    if list(study.directions) != wanted:
        raise UsageError(f"study {name!r} has another objective or direction; choose another "
                         "--study-name")
    for key, value in made_for.items():
        old = study.user_attrs.get(key, value)
        if key == "dataset":
            check_same_data(name, old, value)
        elif old != value:
            raise UsageError(f"study {name!r} was run with {_FLAGS[key]} {old}, not {value}; "
                             "keep it or choose another --study-name")
    dists = distributions(space)
    for trial in study.get_trials(deepcopy=False):
        for param, old in trial.distributions.items():
            if param in dists:
                try:
                    optuna.distributions.check_distribution_compatibility(old, dists[param])
                except ValueError:
                    raise UsageError(
                        f"study {name!r} searched {param} over other choices; keep them "
                        "or choose another --study-name"
                    ) from None


def improves(study, value):
    """Whether `value` of the first objective beats every complete trial's so far."""
    done = [t.values[0] for t in study.get_trials(deepcopy=False,
                                                    states=(optuna.trial.TrialState.COMPLETE,))]
    if not done:
        return True
    if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE:
        return value > max(done)
    return value < min(done)


def optimize(study, space, data, settings, tracker=None, n_trials=None, timeout=None,
             callbacks=(), worker=None, build=None):
    """Run trials through the shared trial runner until `n_trials` or `timeout`;
    `worker` names this process in each trial's user attributes (see search.parallel);
    `build` is the model builder (None: the built-in)."""
    from optuna_integration import KerasPruningCallback

    from search.trial import freeze_long_lived_objects, run_trial

    multi = len(study.directions) > 1
    beat = ProxyHeartbeat(study) if is_proxy(study._storage) else None  # Optuna's: RDB only

    def objective(trial):
        ended = {}  # the attempt's run, once the trial runner closed it
        if beat:
            beat.beat(trial)
        try:
            return run(trial, ended)
        except KeyboardInterrupt as err:  # Optuna fails the trial and re-raises
            trial.set_user_attr("reason", stop_reason(err))
            if ended.get("run_id"):  # a failed trial's run is not FINISHED
                tracker.submit(tracker.close_run, ended["run_id"], "KILLED", "interrupted",
                               stop_reason(err))
            raise
        except StoreLost as err:  # the tracking store went away: no more runs to close
            trial.set_user_attr("reason", str(err))
            raise
        finally:
            if beat:
                beat.rest()

    def run(trial, ended):
        if worker:
            trial.set_user_attr("worker", worker)
        config = suggest(trial, space)
        trial.set_user_attr("config", config)
        pruning = [] if multi else [KerasPruningCallback(trial, settings.metric)]
        result = run_trial(config, data, settings, number=trial.number, engine=ENGINE,
                           tracker=tracker, callbacks=pruning, pruned_errors=(optuna.TrialPruned,),
                           keep_model=lambda value: improves(study, value),
                           **({"build": build} if build else {}))
        ended["run_id"] = result.run_id
        for key in ("value", "dead_fraction", "val_accuracy", "run_id", "model_uri"):
            if getattr(result, key) is not None:
                trial.set_user_attr(key, getattr(result, key))
        trial.set_user_attr(OUTCOME, result.state)
        if result.state == "pruned":
            trial.set_user_attr("reason", result.reason)
            raise optuna.TrialPruned(result.reason)
        if result.state == "failed":
            trial.set_user_attr("reason", result.reason)
            raise TrialFailed(result.reason)
        return (result.value, result.dead_fraction) if multi else result.value

    freeze_long_lived_objects()
    quiet_interrupted_trials()
    optimize_with(study, objective, beat, n_trials=n_trials, timeout=timeout, catch=(TrialFailed,),
              gc_after_trial=True, callbacks=list(callbacks))


class _NoInterruptedTrialLog(logging.Filter):
    """Drops Optuna's log of a trial that a stop (Ctrl-C, SIGTERM) or a lost store
    interrupted: its traceback, ~100 lines a process, and "Trial N failed with value
    None." after it. The stop (the lost store) is one line; the trial keeps its reason."""

    def __init__(self):
        super().__init__()
        self.numbers = set()

    def filter(self, record):
        number = re.match(r"Trial (\d+) failed", str(record.msg))
        if record.exc_info and issubclass(record.exc_info[0], (KeyboardInterrupt, StoreLost)) \
                and number:
            self.numbers.add(number.group(1))
            return False
        return not (number and number.group(1) in self.numbers)


def quiet_interrupted_trials():
    """Install `_NoInterruptedTrialLog` on the logger of Optuna's optimize loop, once."""
    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _NoInterruptedTrialLog) for f in logger.filters):
        logger.addFilter(_NoInterruptedTrialLog())


def best_trials(study, limit=5):
    """The Pareto front (multi-objective) or the `limit` best complete trials, best first."""
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE]
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(done, key=lambda t: (sign * t.value, t.number))[:limit]
