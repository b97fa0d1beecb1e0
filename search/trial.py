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

import keras

import keras_relu
from search.builders import Cures, build_default
from search.optimizers import compile_model
from search.signals import deferred_interrupts, stop_reason


@dataclasses.dataclass(frozen=True)
class TrialSettings:
    """What one trial is fitted and judged with; `loss`/`metrics` None: a classifier's."""

    epochs: int = 5
    batch_size: int = 64
    seed: int = 0
    probe_size: int = 256  # validation samples the dead-neuron monitor looks at
    tau: float = 0.1
    metric: str = "val_accuracy"  # the objective: its value after the last epoch
    loss: object = None
    metrics: object = None
    stop_dead_above: float | None = None  # prune when the dead fraction is above this


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
    run gets the dead-fraction-per-layer plot (written in the background).
    """
    params = {**config, "epochs": settings.epochs, "batch_size": settings.batch_size,
              "seed": settings.seed, "dataset": data.name}
    with deferred_interrupts():  # a run that is made is a run that is closed
        run = tracker.start_child(number, engine, params) if tracker else None
    try:
        return _attempt(config, data, settings, run, number, callbacks, pruned_errors, build,
                        keep_model)
    except KeyboardInterrupt as err:  # in the fit, its clean-up, or after the run was closed
        if run:
            run.finish("interrupted", stop_reason(err))
        raise


def _attempt(config, data, settings, run, number, callbacks, pruned_errors, build, keep_model):
    """`run_trial` once its run exists (an interruption is `run_trial`'s to record)."""
    recorder = _Recorder(run.log_epoch if run else None)
    keras.utils.set_random_seed(settings.seed + number)
    state, reason, model, uri, watchers = "complete", "", None, None, ()
    try:
        model, watchers = _fit(config, data, settings, build, recorder, callbacks)
        value = _last(recorder.history, settings.metric)
        if watchers[0].stopped_reason:
            state, reason = "pruned", watchers[0].stopped_reason
        elif run and keep_model and value is not None and keep_model(value):
            uri = run.log_model(model, data.x_val[:2])
    except NonFiniteLoss as err:
        state, reason = "failed", str(err)
    except pruned_errors as err:
        state, reason = "pruned", str(err) or "pruned"
    except KeyboardInterrupt:
        raise
    except BaseException as err:
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


def _fit(config, data, settings, build, recorder, callbacks):
    """(the fitted model, (its monitor, its ReDo or None)); the monitor measures before
    ReDo recycles, and `recorder` and then `callbacks` see both one's keys."""
    model = build(Cures(config), data.input_shape, data.num_classes)
    steps = math.ceil(len(data.x_train) / settings.batch_size)
    compile_model(model, config, steps, settings.epochs, settings.loss, settings.metrics)
    probe = {"probe": data.x_val, "tau": settings.tau, "max_samples": settings.probe_size,
             "seed": settings.seed, "per_layer": True}
    monitor = keras_relu.DeadNeuronMonitor(every=1, stop_above=settings.stop_dead_above,
                                           **probe)
    redo = (keras_relu.ReDo(every=int(config.get("recycle_every", 1)), **probe)
            if config.get("recycle") == "redo" else None)
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
              epochs=settings.epochs, batch_size=settings.batch_size, verbose=0,
              callbacks=[_LearningRate(), monitor, *([redo] if redo else []), recorder,
                         _StopOnNonFiniteLoss(), *callbacks])
    return model, (monitor, redo)
