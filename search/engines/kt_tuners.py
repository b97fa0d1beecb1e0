"""KerasTuner's tuners over the shared trial runner, and the translation both ways:
a space to `keras_tuner.HyperParameters`, an ended KerasTuner trial to a `TrialRecord`."""

import contextlib
import dataclasses
import enum
import time

import keras_tuner

from search.space import Choice, Fixed, Float, Int

ENGINE = "kerastuner"


def hyperparameters(space):
    """`keras_tuner.HyperParameters` declaring every dimension of `space`, in order;
    a conditional dimension is declared inside KerasTuner's conditional scopes, nested
    when its parent is itself conditional (recycle_every under recycle under residual)."""
    hp = keras_tuner.HyperParameters()
    whens = {dim.name: dim.when for dim in space}
    for dim in space:
        with contextlib.ExitStack() as scopes:
            for parent, values in _condition_chain(dim.name, whens):
                scopes.enter_context(hp.conditional_scope(parent, list(values)))
            _declare(hp, dim)
    return hp


def _condition_chain(name, whens):
    """The conditions of `name`, outermost first."""
    chain = []
    while whens.get(name) is not None:
        chain.append(whens[name])
        name = whens[name][0]
    return chain[::-1]


def _declare(hp, dim):
    if isinstance(dim, Fixed):
        hp.Fixed(dim.name, dim.value)
    elif isinstance(dim, Choice) and all(isinstance(v, bool) for v in dim.values):
        hp.Boolean(dim.name)  # hp.Choice would turn False/True into 0/1
    elif isinstance(dim, Choice):
        hp.Choice(dim.name, list(dim.values))
    elif isinstance(dim, (Float, Int)):
        kind = hp.Float if isinstance(dim, Float) else hp.Int
        kind(dim.name, dim.low, dim.high, sampling="log" if dim.log else "linear")
    else:
        raise TypeError(f"no KerasTuner translation for {type(dim).__name__}")


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
    (config, value, val_accuracy, dead_fraction, reason, run_id, model_uri)."""

    number: int
    state: State
    user_attrs: dict


def record(space, trial, metric="val_accuracy", **known):
    """The `TrialRecord` of an ended KerasTuner trial (None if it has not ended); `known`
    adds what this process knows of it (run_id, model_uri)."""
    if trial.status not in {s.value for s in State}:
        return None
    attrs = {"config": config_of(space, trial.hyperparameters.values)}
    for key, name in ((metric, "value"), ("val_accuracy", "val_accuracy"),
                      ("dead_fraction", "dead_fraction")):
        if trial.metrics.exists(key):
            attrs[name] = trial.metrics.get_last_value(key)
    if trial.message:  # a traceback; its last line ends with the reason
        attrs["reason"] = trial.message.strip().splitlines()[-1].partition(": ")[2]
    attrs.update({k: v for k, v in known.items() if v})
    return TrialRecord(int(trial.trial_id), State(trial.status), attrs)


class _TaggedTracker:
    """The search's tracker, adding one trial's tags to the child run it starts."""

    def __init__(self, tracker, tags):
        self._tracker, self._tags = tracker, tags

    def start_child(self, trial_number, engine, params):
        return self._tracker.start_child(trial_number, engine, params, tags=self._tags)


@dataclasses.dataclass
class Job:
    """What `optimize` hands the tuner for its trials."""

    study: object  # search.engines.kerastuner.Study
    data: object
    settings: object
    tracker: object
    deadline: float | None
    callbacks: tuple
    build: object = None  # the model builder; None: the built-in
    known: dict = dataclasses.field(default_factory=dict)  # trial_id -> run_id, model_uri


class _SharedTrialRunner:
    """Mixed into a KerasTuner tuner: trials run through `search.trial.run_trial`."""

    job = None  # a Job, set by `search.engines.kerastuner.optimize`

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
                               number=int(trial.trial_id), engine=ENGINE, tracker=tracker,
                               keep_model=self._improves,
                               **({"build": job.build} if job.build else {}))
        except Exception as err:  # a bug, not a bad configuration: stop the search
            raise keras_tuner.errors.FatalError(f"{type(err).__name__}: {err}") from err
        job.known[trial.trial_id] = {"run_id": result.run_id, "model_uri": result.model_uri}
        if result.state != "complete":  # KerasTuner has no pruned state: a failed trial
            raise keras_tuner.errors.FailedTrialError(
                result.reason if result.state == "failed" else f"pruned: {result.reason}")
        found = {settings.metric: result.value, "val_accuracy": result.val_accuracy,
                 "dead_fraction": result.dead_fraction}
        return {k: v for k, v in found.items() if v is not None}

    def _improves(self, value):
        """Whether `value` beats the oracle's best trial so far (the first does)."""
        best = self.oracle.get_best_trials(1)
        if not best or best[0].score is None:
            return True
        if self.oracle.objective.direction == "max":
            return value > best[0].score
        return value < best[0].score

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
