"""The one trial runner shared by every engine: config + data -> fitted model -> TrialResult.

The builder makes the model (`search.builders`), the runner compiles it with the
trial's optimizer and fits it with the dead-neuron monitor; a trial the engine says
improves on the study's best logs its fitted model to its MLflow run.

Callback order matters: the learning rate and `keras_relu.DeadNeuronMonitor` write
their keys into the epoch logs first; the recorder (and MLflow) then sees every key;
the non-finite-loss guard stops a diverged trial before an engine's pruning callback
can mistake it for a merely bad one.
"""

import dataclasses
import gc
import math
import warnings

import keras

import keras_relu
from search.builders import Cures, build_default
from search.noise import seed_quietly
from search.optimizers import compile_model
from search.signals import deferred_interrupts, stop_in_flight, stop_reason


@dataclasses.dataclass(frozen=True)
class TrialSettings:
    """What one trial is fitted and judged with; `loss`/`metrics` None: a classifier's."""

    epochs: int = 5
    batch_size: int = 64
    seed: int = 0  # the search's: the data split and the monitor's probe
    trial_seed: int | None = None  # every trial's (weights, data order); None: seed + number
    probe_size: int = 256  # validation samples the dead-neuron monitor looks at
    tau: float = 0.1
    metric: str = "val_accuracy"  # the objective: its value after the last epoch
    loss: object = None
    metrics: object = None
    stop_dead_above: float | None = None  # prune when the dead fraction is above this

    def seed_for(self, number):
        """The seed trial `number` trains with: `trial_seed`, else `seed + number`."""
        return self.seed + number if self.trial_seed is None else self.trial_seed


@dataclasses.dataclass
class TrialResult:
    state: str  # "complete" | "pruned" | "failed"
    value: float | None  # the objective metric's last value
    val_accuracy: float | None
    dead_fraction: float | None
    history: dict  # key -> one value per epoch run
    reason: str = ""
    run_id: str | None = None
    model_uri: str | None = None  # the logged fitted model, if it was kept


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


class _LearningRate(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))


class _Recorder(keras.callbacks.Callback):
    """Keeps every epoch's logs (even if a later callback stops the fit) and forwards them."""

    def __init__(self, forward=None):
        super().__init__()
        self.history, self.forward = {}, forward

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        if self.forward:
            self.forward(epoch, logs)


class _StopOnNonFiniteLoss(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        for key in ("loss", "val_loss"):  # a NaN val_loss must not make a trial "best"
            loss = (logs or {}).get(key)
            if loss is not None and not math.isfinite(loss):
                raise NonFiniteLoss(f"{key} became {loss} in epoch {epoch}")


def freeze_long_lived_objects():
    """Collect once, then exempt everything alive now (libraries, data) from later
    collections, so the per-trial `gc.collect()` only walks what trials created:
    without this each collection costs ~0.4 s with TensorFlow/JAX/MLflow loaded."""
    gc.collect()
    gc.freeze()


def _last(history, key):
    values = history.get(key)
    return float(values[-1]) if values else None


def run_trial(config, data, settings, *, number, engine, tracker=None, callbacks=(),
              pruned_errors=(), build=build_default, keep_model=None):
    """Build, compile, fit and evaluate `config` on `data`; log it as a child run.

    `build(cures, input_shape, num_classes)` makes the uncompiled model. `callbacks` are
    the engine's (e.g. pruning), run last; an exception in `pruned_errors` means the
    engine pruned the trial. A NaN/inf loss gives a "failed" result with its reason; any
    other exception is recorded and re-raised. `keep_model(value)`, asked after a
    complete trial, says whether to log the fitted model (an improvement). The child
    run gets the dead-fraction-per-layer plot (written in the background). Trial 0 (a
    study's first) warns about dimensions that neither `build` nor the runner reads.
    """
    seed = settings.seed_for(number)
    params = {**config, "epochs": settings.epochs, "batch_size": settings.batch_size,
              "seed": settings.seed, "trial_seed": seed, "dataset": data.name}
    run = None
    try:  # a stop deferred while the run is made is raised at the block's end: in here
        with deferred_interrupts():  # a run that is made is a run that is closed
            run = tracker.start_child(number, engine, params) if tracker else None
        return _attempt(config, data, settings, run, number, seed, callbacks, pruned_errors,
                        build, keep_model)
    except KeyboardInterrupt as err:  # in the fit, its clean-up, or after the run was closed
        if run:
            run.finish("interrupted", stop_reason(err))
        raise


def _attempt(config, data, settings, run, number, seed, callbacks, pruned_errors, build,
             keep_model):
    """`run_trial` once its run exists (an interruption is `run_trial`'s to record)."""
    recorder = _Recorder(run.log_epoch if run else None)
    seed_quietly(seed)  # before the model is built: weights, data order
    state, reason, model, uri, watchers = "complete", "", None, None, ()
    try:
        model, watchers = _fit(Cures(config), data, settings, build, recorder, callbacks, run,
                               warn_unread=number == 0)
        value = _last(recorder.history, settings.metric)
        if watchers[0].stopped_reason:
            state, reason = "pruned", watchers[0].stopped_reason
        elif run and keep_model and value is not None and keep_model(value):
            uri = run.log_model(model, data.sample(2)[0])
    except NonFiniteLoss as err:
        state, reason = "failed", str(err)
    except pruned_errors as err:
        state, reason = "pruned", str(err) or "pruned"
    except KeyboardInterrupt:
        raise
    except BaseException as err:
        stop = stop_in_flight()
        if stop is not None:  # the stop surfaced as another error: `run_trial` records it
            raise stop from err
        if run:
            run.finish("failed", f"{type(err).__name__}: {err}")
        raise
    finally:
        del model
        keras.utils.clear_session(free_memory=True)  # includes gc.collect()
    history = recorder.history
    if run:
        if watchers:
            run.log_plots(*watchers)
        run.finish(state, reason)
    return TrialResult(state, _last(history, settings.metric), _last(history, "val_accuracy"),
                       _last(history, "dead_fraction"), history, reason,
                       run.run_id if run else None, uri)


def _log_starting_point(run, model, cures, build, data, batch_size):
    """A finished model's swap report, and for one that starts from its own weights its
    validation scores before any training (`initial_val_<metric>`)."""
    report = getattr(cures, "swap_report", None)
    if report is not None:
        run.log_dict(report.to_dict(), "swap_report.json")
        run.log(tags={"swap_replaced": len(report.replaced), "swap_skipped": len(report.skipped)})
    if getattr(build, "pretrained", False):
        scores = model.evaluate(**data.evaluate_kwargs("val", batch_size), verbose=0,
                                return_dict=True)
        run.log(metrics={f"initial_val_{k}": v for k, v in scores.items()})


def _fit(cures, data, settings, build, recorder, callbacks, run=None, warn_unread=False):
    """(the fitted model, (its monitor, its ReDo or None)); the monitor measures before
    ReDo recycles, and `recorder` and then `callbacks` see both one's keys."""
    config = cures.config  # records what the builder, compile and the callbacks read
    model = build(cures, data.input_shape, data.num_classes)
    steps = data.steps_per_epoch(settings.batch_size)
    compile_model(model, config, steps, settings.epochs, settings.loss or data.default_loss,
                  settings.metrics)
    if run:
        _log_starting_point(run, model, cures, build, data, settings.batch_size)
    probe = {"probe": data.probe(), "tau": settings.tau, "max_samples": settings.probe_size,
             "seed": settings.seed, "per_layer": True}
    monitor = keras_relu.DeadNeuronMonitor(every=1, stop_above=settings.stop_dead_above,
                                           **probe)
    redo = (keras_relu.ReDo(every=int(config.get("recycle_every", 1)), **probe)
            if config.get("recycle") == "redo" else None)
    if warn_unread and config.unread():
        warn_unread_dimensions(config.unread(), build)
    model.fit(**data.fit_kwargs(settings.batch_size), validation_data=data.validation_data(),
              epochs=settings.epochs, verbose=0,
              callbacks=[_LearningRate(), monitor, *([redo] if redo else []), recorder,
                         _StopOnNonFiniteLoss(), *callbacks])
    return model, (monitor, redo)


def warn_unread_dimensions(names, build):
    """One warning naming the space's dimensions that nothing read in a trial."""
    who = ("the built-in model" if build is build_default else
           f"the model builder {getattr(build, '__qualname__', build)}")
    one = len(names) == 1
    warnings.warn(f"dimension{'' if one else 's'} {', '.join(names)} of the search space "
                  f"{'is' if one else 'are'} read by neither {who} nor the trial runner: "
                  f"{'it changes' if one else 'they change'} nothing (a builder reads a "
                  "dimension as cures.config[NAME])", stacklevel=4)
