"""`DeadNeuronMonitor`: the dead-neuron figures of `keras_relu.neurons` in the epoch logs."""

import logging
import numbers

import keras

from keras_relu.neurons import Probe, draw_probe

_log = logging.getLogger("keras_relu")


class DeadNeuronMonitor(keras.callbacks.Callback):
    """Logs dead, dormant and zero fractions per layer at the end of epochs.

    Adds to the epoch `logs` the keys `dead_fraction`, `dormant_fraction`,
    `zero_fraction`, `revived` (units dead at the previous check and alive
    now), `revived_total` (cumulative since `on_train_begin`), and with
    `per_layer=True` per layer `dead_fraction/<layer name>` (same for dormant
    and zero; off by default, as three keys per layer crowd Keras' progress
    line). Definitions are in `keras_relu.neurons`' docstring. The per-layer
    figures are always in `monitor.checks` and `monitor.last.layers`. Later
    callbacks see these keys, so put
    the monitor *before* `CSVLogger`, `mlflow.keras.MlflowCallback` and Optuna
    pruning callbacks in the `callbacks` list. It measures once before the
    first epoch too: `monitor.initial` (dead at initialisation); the latest
    figures are `monitor.last`, all checks `monitor.checks` (epoch, stats).

    Keras does not show callbacks the data given to `fit`, so pass the probe
    set: `DeadNeuronMonitor(probe=x_train)`. At most `max_samples` samples
    are drawn from it once, with `seed` (all of it if smaller), and that fixed
    set is measured in inference mode every `every` epochs (epoch 0 always).

    With `stop_above`, training stops once the dead fraction is above it at
    `patience + 1` checks in a row; `monitor.stopped_reason` then says why (e.g.
    "dead fraction 0.71 > 0.5 at epoch 3"), `monitor.stopped_epoch` is that
    epoch (0-based, Keras' epoch index), and the same sentence is logged at
    WARNING level on the `keras_relu` logger. Both are None when it did not stop.

    Example:

    ```python
    monitor = keras_relu.DeadNeuronMonitor(probe=x_train, stop_above=0.5)
    history = model.fit(x_train, y_train, epochs=10,
                        callbacks=[monitor, keras.callbacks.CSVLogger("log.csv")])
    history.history["dead_fraction"], monitor.initial.dead_fraction
    monitor.stopped_reason  # None, or e.g. "dead fraction 0.71 > 0.5 at epoch 3"
    ```

    Args:
        probe: the probe inputs: an array, or a list/dict of arrays for a
            multi-input model.
        every: check every this many epochs.
        tau: the tau-dormant threshold.
        batch_size: samples per forward pass of a check.
        max_samples: the most samples drawn from `probe`; None for all.
        seed: the seed of that draw.
        per_layer: whether to log the per-layer keys too.
        stop_above: stop training when the dead fraction is above this (in
            [0, 1)); None never stops.
        patience: how many further checks above `stop_above` to wait before
            stopping.
    """

    def __init__(self, probe=None, every=1, tau=0.1, batch_size=256,
                 max_samples=2048, seed=0, per_layer=False, stop_above=None, patience=0):
        super().__init__()
        if not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"`every` must be a positive integer, got {every!r}.")
        if stop_above is not None and not (isinstance(stop_above, (int, float))
                                           and 0 <= stop_above < 1):
            raise ValueError(f"`stop_above` must be None or a fraction in [0, 1), "
                             f"got {stop_above!r}.")
        if not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"`patience` must be an integer >= 0, got {patience!r}.")
        self.probe = None if probe is None else draw_probe(probe, max_samples, seed)
        self.every, self.tau, self.batch_size = int(every), tau, batch_size
        self.per_layer, self.stop_above, self.patience = per_layer, stop_above, patience
        self.initial = self.last = self.stopped_reason = self.stopped_epoch = None
        self.checks, self.revived_total, self._above = [], 0, 0
        self._compiled = None  # (model, Probe, converted probe)

    def _measure(self):
        _, probe, xs = self._compiled
        return probe.measure(xs, batch_size=self.batch_size, tau=self.tau)

    def on_train_begin(self, logs=None):
        self.checks, self.revived_total, self.last = [], 0, None
        self.stopped_reason = self.stopped_epoch = None
        self._above = 0
        if self._compiled is None or self._compiled[0] is not self.model:
            if self.probe is None:
                raise ValueError(
                    "DeadNeuronMonitor has no probe data. Keras does not show callbacks "
                    "the data given to fit(): pass it, e.g. DeadNeuronMonitor(probe=x_train) "
                    "(at most `max_samples` samples are drawn from it once, with `seed`).")
            probe = Probe(self.model, self.probe)
            self._compiled = (self.model, probe, probe.convert(self.probe) if probe.names else None)
        self.initial = self.last = self._measure() if self._compiled[1].names else None

    def on_epoch_end(self, epoch, logs=None):
        if self.last is None or epoch % self.every:
            return
        stats = self._measure()
        revived = sum(len(set(prev.dead_units) - set(stats.layers[name].dead_units))
                      for name, prev in self.last.layers.items())
        self.revived_total += revived
        self.last = stats
        self.checks.append((epoch, stats))
        if logs is not None:
            logs.update(stats.logs(self.per_layer), revived=revived,
                        revived_total=self.revived_total)
        self._maybe_stop(epoch, stats.dead_fraction)

    def _maybe_stop(self, epoch, dead_fraction):
        if self.stop_above is None:
            return
        self._above = self._above + 1 if dead_fraction > self.stop_above else 0
        if self._above > self.patience:
            self.stopped_epoch = epoch
            self.stopped_reason = (f"dead fraction {dead_fraction:.2f} > {self.stop_above:g} "
                                   f"at epoch {epoch}")
            self.model.stop_training = True
            _log.warning("DeadNeuronMonitor stops training: %s.", self.stopped_reason)
