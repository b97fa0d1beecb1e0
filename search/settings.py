"""`SearchSettings`: everything one search invocation is run with, checked once.

The same object travels to the workers: `to_dict()` is stored with the study (Optuna's
study user attribute, KerasTuner's project folder) and `from_dict()` rebuilds it in
`keras-relu worker`, on this machine or another.
"""

import dataclasses
import math

from search import UsageError
from search.names import (BACKENDS, DEFAULT_STORAGE, DIRECTIONS, ENGINES, OBJECTIVES,
                          PRUNERS, SAMPLERS, TUNERS)

_MINIMIZED = ("loss", "error", "mse", "mae", "dead_fraction", "dormant_fraction")


@dataclasses.dataclass
class SearchSettings:
    """One search. Defaults are those of `keras-relu search`.

    Attributes:
        dataset: `digits`, `synthetic`, `mnist`, `fashion_mnist`, `cifar10`, `npz:PATH`,
            or the name given to in-memory arrays.
        samples, features, classes: the size of the `synthetic` data set.
        model: the model's reference, `module:function`, `file.py:function` (a builder
            or a factory, see `search.models`) or `file.keras`; None: the built-in.
        reinitialize: a `.keras` file's trials start from fresh weights (the trial's
            initializer), not from the file's.
        steps_per_epoch, num_classes: for pipelines, what cannot be read off their first
            batches (an infinite tf.data pipeline's epoch; classes the first batches lack).
        image_size: `images:DIR`: (height, width) images are resized to (default: the
            first image's size).
        engine: `optuna` or `kerastuner`; `tuner` (kerastuner: random, bayesian,
            hyperband), `pruner` (optuna: median, hyperband, none) and `sampler` (optuna:
            tpe, random, gp) choose within it.
        metric, direction: the objective, a key the model logs (default `val_accuracy`);
            `maximize` or `minimize` (default: minimize a loss or error, else maximize).
        objective: `accuracy` (the metric alone), or `pareto` (the metric and the dead
            fraction; optuna).
        loss, metrics: compile arguments for a model that is not a plain classifier.
        prune_dead_above: prune a trial once its dead fraction is above this (0-1).
        controls: start a new Optuna study with the control trials (plain ReLU on a deep,
            narrow model, and each cure on it; `search.space.CONTROLS`) when its space
            has them.
        trials, timeout: trials this invocation runs; stop starting trials after seconds.
        epochs, batch_size: per trial.
        seed: the data split and the probe; trial N trains with seed + N.
        trial_seed: every trial trains with this seed instead (a retrain of one trial).
        study_name: the same name resumes the study (default: the data set's name).
        storage: Optuna storage URL or journal file (default `mlruns/optuna.journal`).
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI, else SQLite
            under ./mlruns).
        workers, devices: worker processes on one study; GPUs, e.g. "0,1".
        trials_per_process: optuna: a worker process runs at most this many trials, then
            a fresh one takes over (default: 25 on TensorFlow, whose memory grows with
            every fit, else no limit). A search of one process with more trials than this
            (given), or than 100 (TensorFlow's default), runs in such workers.
        backend: the Keras backend, set before Keras is imported.
        mixed_precision: mixed float16 (bfloat16 on CPU) compute.
        overwrite: kerastuner: start the study's project afresh.
    """

    dataset: str = "digits"
    model: str | None = None
    samples: int = 2000
    features: int = 20
    classes: int = 4
    engine: str = "optuna"
    tuner: str | None = None
    pruner: str | None = None
    sampler: str | None = None
    metric: str = "val_accuracy"
    direction: str | None = None
    objective: str = "accuracy"
    loss: object = None
    metrics: object = None
    prune_dead_above: float | None = None
    controls: bool = True
    trials: int = 20
    timeout: float | None = None
    epochs: int = 5
    batch_size: int = 64
    seed: int = 0
    trial_seed: int | None = None
    study_name: str | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    workers: int | None = None
    devices: str | None = None
    trials_per_process: int | None = None
    backend: str | None = None
    mixed_precision: bool = False
    overwrite: bool = False
    reinitialize: bool = False
    steps_per_epoch: int | None = None
    num_classes: int | None = None
    image_size: tuple | None = None

    def check(self):
        """Raise `UsageError` for a value out of range or an option of the other engine."""
        for name, kind in (("trials", int), ("epochs", int), ("batch_size", int),
                           ("samples", int), ("features", int), ("classes", int),
                           ("workers", int), ("timeout", float), ("trials_per_process", int),
                           ("steps_per_epoch", int), ("num_classes", int)):
            _positive(name, getattr(self, name), kind,
                      optional=name in ("workers", "timeout", "trials_per_process",
                                        "steps_per_epoch", "num_classes"))
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) != 2 or not all(isinstance(d, int) and d > 0 for d in size):
                raise UsageError(f"image_size must be (height, width), got {self.image_size!r}")
            self.image_size = size
        for name in ("seed", "trial_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) and not (
                    value is None and name == "trial_seed"):
                raise UsageError(f"{name} must be an integer, got {value!r}")
        for name, valid in (("engine", ENGINES), ("objective", OBJECTIVES),
                            ("backend", BACKENDS), ("tuner", TUNERS), ("pruner", PRUNERS),
                            ("sampler", SAMPLERS), ("direction", DIRECTIONS)):
            value = getattr(self, name)
            if value is not None and value not in valid:
                raise UsageError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if self.prune_dead_above is not None and not (
                isinstance(self.prune_dead_above, (int, float)) and 0 <= self.prune_dead_above < 1):
            raise UsageError(f"prune_dead_above must be a number in [0, 1), got "
                             f"{self.prune_dead_above!r}")
        if not isinstance(self.metric, str) or not self.metric:
            raise UsageError(f"metric must be a name the model logs, got {self.metric!r}")
        self._check_engine_options()
        if self.study_name is not None and not str(self.study_name).strip():
            raise UsageError("study_name must not be empty")
        return self

    def _check_engine_options(self):
        if self.engine == "optuna":
            given = {"tuner": self.tuner, "overwrite": self.overwrite}
        else:
            given = {"pruner": self.pruner, "sampler": self.sampler, "storage": self.storage,
                     "trials-per-process": self.trials_per_process,
                     "objective pareto": self.objective == "pareto"}
        other = "kerastuner" if self.engine == "optuna" else "optuna"
        for option, value in given.items():
            if value:
                raise UsageError(f"--{option} applies to --engine {other} only")
        if self.worker_count > 1 and self.engine == "optuna" \
                and (self.storage or "").startswith("sqlite"):
            raise UsageError("--workers: SQLite is not safe for parallel writers; use the "
                             "default journal file, postgresql:// or mysql+pymysql://")

    @property
    def worker_count(self):
        """How many worker processes run the trials: `workers`, else one per device in
        `devices`, else 1."""
        from search.runtime import worker_count

        return worker_count(self.workers, self.devices)

    @property
    def storage_url(self):
        """The Optuna storage: as given, else the journal file under ./mlruns."""
        return self.storage or DEFAULT_STORAGE

    @property
    def chosen_pruner(self):
        """As given, else `median` (Optuna's MedianPruner)."""
        return self.pruner or "median"

    @property
    def chosen_tuner(self):
        """KerasTuner's tuner: as given, else `random`."""
        return self.tuner or "random"

    @property
    def chosen_sampler(self):
        """Optuna's sampler: as given, else `tpe`."""
        return self.sampler or "tpe"

    @property
    def chosen_direction(self):
        """As given, else `minimize` for a loss or an error, `maximize` for the rest."""
        if self.direction:
            return self.direction
        return "minimize" if any(w in self.metric for w in _MINIMIZED) else "maximize"

    def data_options(self):
        """The keyword arguments `search.data.load` takes for this search's data."""
        return {"seed": self.seed, "samples": self.samples, "features": self.features,
                "classes": self.classes, "targets": self.loss is not None,
                "batch_size": self.batch_size, "image_size": self.image_size,
                "steps_per_epoch": self.steps_per_epoch, "num_classes": self.num_classes}

    def trial_settings(self):
        """What the trial runner needs of these settings."""
        from search.trial import TrialSettings

        return TrialSettings(epochs=self.epochs, batch_size=self.batch_size, seed=self.seed,
                             trial_seed=self.trial_seed, metric=self.metric, loss=self.loss,
                             metrics=self.metrics, stop_dead_above=self.prune_dead_above)

    def to_dict(self):
        """Plain data for a worker; a URL's password is never stored (a worker takes the
        URL from its own command line or environment)."""
        from search.secrets import mask_text

        data = dataclasses.asdict(self)
        if not _plain(self.loss) or not _plain(self.metrics):
            raise UsageError("loss= and metrics= must be names Keras knows (strings) when "
                             "workers in other processes need them")
        for key in ("storage", "tracking_uri"):
            if data[key] and mask_text(data[key]) != data[key]:
                data[key] = None
        return data

    @classmethod
    def from_dict(cls, data):
        """The settings `to_dict` stored; keys of a newer version are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def _plain(value):
    """A value JSON keeps as it is: None, a string, or a list/dict of strings."""
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return isinstance(value, dict) and all(_plain(v) for v in value.values())


def _positive(name, value, kind, optional=False):
    if value is None and optional:
        return
    ok = (not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int)
          and math.isfinite(value) and value > 0)
    if not ok:
        noun = "a positive integer" if kind is int else "a positive number"
        raise UsageError(f"{name} must be {noun}, got {value!r}")
