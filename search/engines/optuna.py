"""The Optuna engine: the space as `suggest_*` calls, storage, study, pruning, optimize.

Single objective: the chosen metric (validation accuracy unless told otherwise).
Multi-objective ("pareto"): the metric and the dead fraction (minimised); Optuna cannot
prune those, so no pruner.
What a worker needs to join (settings, space, parent run) is the study's `search`
user attribute.
"""

import os
import pathlib
import warnings

import optuna

from search import UsageError
from search.engines.optuna_space import distributions, make_pruner, make_sampler, suggest
from search.names import DEFAULT_STORAGE
from search.runtime import spread_seed
from search.secrets import mask_text

ENGINE = "optuna"
JOB_ATTR = "search"  # the study user attribute holding a worker's job
HEARTBEAT = {"heartbeat_interval": 3, "grace_period": 10}  # seconds; RDB storages only
MAX_RETRY = 3  # a trial whose worker died is retried at most this often


class TrialFailed(RuntimeError):
    """A trial that failed in a way the study survives (e.g. a NaN loss)."""


def open_storage(url=None):
    """The storage at `url`: an SQLAlchemy URL, or a journal file path (default one)."""
    target = url or DEFAULT_STORAGE
    try:
        if "://" not in target:
            from optuna.storages.journal import JournalFileBackend

            path = pathlib.Path(target).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            # Absolute: the lock is a symlink to this path, and Optuna breaks a stale lock
            # (holder killed) by stat-ing through it; a relative target dangles and the
            # waiters spin forever.
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        connect_args = {"connect_timeout": 10} if target.startswith(("postgresql", "mysql")) else {}
        with warnings.catch_warnings():  # heartbeat and retry are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                _driver(target), engine_kwargs={"connect_args": connect_args},
                heartbeat_stale_trial_callback=retry_callback(), **HEARTBEAT)
    except Exception as err:
        cause = getattr(err, "orig", None) or err
        lines = str(cause).strip().splitlines()
        raise UsageError(
            f"cannot open storage {mask_text(target)}: {lines[0] if lines else type(err).__name__}"
        ) from None


class _Retry(getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
             or optuna.storages.RetryFailedTrialCallback):  # the new name since Optuna 4.9
    """Optuna's retry of a failed trial, without the dead attempt's reason, worker, run."""

    def __call__(self, study, trial):
        import copy

        from search import recovery

        recovery.on_stale_trial(study, trial)  # close the dead attempt's MLflow run
        trial = copy.copy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k == "config"}
        super().__call__(study, trial)


def retry_callback():
    """Re-queues a trial whose worker died (same params; `failed_trial` system attribute)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _Retry(max_retry=MAX_RETRY)


def _driver(url):
    """psycopg2 / PyMySQL where SQLAlchemy's default driver is missing (search.stores)."""
    from search.stores import sqlalchemy_url

    return sqlalchemy_url(url)


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
    if settings.controls and not study.get_trials(deepcopy=False):
        enqueue_controls(study, space)
    return study


def enqueue_controls(study, space):
    """Start a new study with the control trials of `search.space.CONTROLS` that are
    configs of `space` (each tagged with its `control` label)."""
    from search.space import CONTROLS

    searched = distributions(space)
    for label, config in CONTROLS.items():
        if space.contains(config):
            study.enqueue_trial({k: v for k, v in config.items() if k in searched},
                                user_attrs={"control": label})


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
        job = optuna.load_study(study_name=study_name, storage=storage).user_attrs[JOB_ATTR]
    except KeyError:
        raise UsageError(f"no study {study_name!r} made by `keras-relu search` in "
                         f"{mask_text(storage_url)}") from None
    settings = job["settings"]
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
        if old != value and key == "dataset":
            raise UsageError(f"study {name!r} was run on dataset {old!r}; choose another "
                             "--study-name")
        if old != value:
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

    def objective(trial):
        try:
            return run(trial)
        except KeyboardInterrupt:  # Optuna fails the trial and re-raises
            trial.set_user_attr("reason", "interrupted by the user")
            raise

    def run(trial):
        if worker:
            trial.set_user_attr("worker", worker)
        config = suggest(trial, space)
        trial.set_user_attr("config", config)
        pruning = [] if multi else [KerasPruningCallback(trial, settings.metric)]
        result = run_trial(config, data, settings, number=trial.number, engine=ENGINE,
                           tracker=tracker, callbacks=pruning, pruned_errors=(optuna.TrialPruned,),
                           keep_model=lambda value: improves(study, value),
                           **({"build": build} if build else {}))
        for key in ("value", "dead_fraction", "val_accuracy", "run_id", "model_uri"):
            if getattr(result, key) is not None:
                trial.set_user_attr(key, getattr(result, key))
        if result.state == "pruned":
            trial.set_user_attr("reason", result.reason)
            raise optuna.TrialPruned(result.reason)
        if result.state == "failed":
            trial.set_user_attr("reason", result.reason)
            raise TrialFailed(result.reason)
        return (result.value, result.dead_fraction) if multi else result.value

    freeze_long_lived_objects()
    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(TrialFailed,),
                   gc_after_trial=True, callbacks=list(callbacks))


def best_trials(study, limit=5):
    """The Pareto front (multi-objective) or the `limit` best complete trials, best first."""
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE]
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(done, key=lambda t: (sign * t.value, t.number))[:limit]
