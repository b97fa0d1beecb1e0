"""`ReDo`: recycle dormant units during training (Sokar et al. 2023)."""

import numbers
import random
import warnings

import keras
import numpy as np
from keras import ops

from keras_relu.graph import kernel_axes, unit_maps
from keras_relu.neurons import Probe, draw_probe

# Per optimizer class, its attributes holding one slot variable per trainable variable
# (zero-initialised in `build`). A subclass from outside Keras may keep more state; Keras'
# own backend subclasses (torch's `torch_adam.Adam`, ...) keep the same.
_SLOTS = {
    keras.optimizers.SGD: ("momentums",),
    keras.optimizers.Adam: ("_momentums", "_velocities", "_velocity_hats"),
    keras.optimizers.AdamW: ("_momentums", "_velocities", "_velocity_hats"),
    keras.optimizers.Nadam: ("_momentums", "_velocities"),
    keras.optimizers.Adamax: ("_m", "_u"),
    keras.optimizers.RMSprop: ("_velocities", "_momentums", "_average_gradients"),
    keras.optimizers.Lion: ("_momentums",),
}


def optimizer_slots(optimizer, variables):
    """{id(variable): [(slot variable, "zero" | "copy")]} for the `variables` it trains.

    "zero": a moment, momentum or accumulated gradient, reset to 0; "copy": the
    optimizer's moving average of the weight (`use_ema`), set to the new weight.
    The step count (`iterations`) is never touched. Raises `ValueError` naming
    the optimizer when its slots are not known.

    Keras 3.15 has no public map from a model variable to its optimizer state.
    This is the one function reading the private one: the per-variable lists each
    optimizer fills in `build` (`_momentums`, `_velocities`, ...), the base
    optimizer's `_get_variable_index`, `_accumulated_gradients` and
    `_model_variables_moving_average`.
    """
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    names = None
    for cls in type(optimizer).__mro__:
        if cls in _SLOTS:
            names = _SLOTS[cls]
            break
        if not cls.__module__.startswith("keras."):
            break
    if names is None:
        raise ValueError(
            f"ReDo cannot reset the state the optimizer {type(optimizer).__name__} keeps per "
            "weight, because it does not know where it is. Supported optimizers: "
            f"{', '.join(sorted(c.__name__ for c in _SLOTS))} (and LossScaleOptimizer around "
            "them).")
    if not optimizer.built:
        return {}
    lists = [(getattr(optimizer, name, None) or [], "zero") for name in names]
    if optimizer.gradient_accumulation_steps:
        lists.append((optimizer._accumulated_gradients, "zero"))
    if optimizer.use_ema:
        lists.append((optimizer._model_variables_moving_average, "copy"))
    slots = {}
    for variable in variables:
        try:
            index = optimizer._get_variable_index(variable)
        except KeyError:  # not trained by this optimizer
            continue
        slots[id(variable)] = [(slots_[index], how) for slots_, how in lists if slots_]
    return slots


class _Edits:
    """The new values of the variables one recycle changes, and the entries changed."""

    def __init__(self):
        self.items = {}  # id(variable) -> (variable, new value, changed mask)

    def set(self, variable, axis, index, new):
        """Entries `index` along `axis` of `variable` := those of `new` (array or scalar)."""
        if id(variable) not in self.items:
            value = np.array(ops.convert_to_numpy(variable))
            self.items[id(variable)] = (variable, value, np.zeros(value.shape, bool))
        _, value, mask = self.items[id(variable)]
        where = (slice(None),) * (axis % value.ndim) + (np.asarray(index),)
        value[where] = new[where] if np.ndim(new) else new
        mask[where] = True

    def apply(self, slots):
        for variable, value, mask in self.items.values():
            variable.assign(value)
            for slot, how in slots.get(id(variable), ()):
                old = ops.convert_to_numpy(slot)
                slot.assign(np.where(mask, 0 if how == "zero" else value, old).astype(old.dtype))


class ReDo(keras.callbacks.Callback):
    """Recycles dormant units: re-initialises them, so they learn again (ReDo).

    Sokar, Agarwal, Castro and Evci (2023), "The Dormant Neuron Phenomenon in Deep
    Reinforcement Learning". Every `every` epochs (or every `every_steps` training
    steps), the units of each monitored layer (see `keras_relu.neurons`) are scored
    on a fixed probe set with the tau-dormant score

    ```
    score_i = mean |h_i| / (mean over units k of mean |h_k| + 1e-9)
    ```

    and every unit with `score_i <= tau` (dead units score 0) is recycled:

    - its incoming weights in the Dense/Conv layer producing it (a kernel column, a
      conv filter) are drawn afresh from that layer's own `kernel_initializer`,
      its bias is set to 0;
    - a BatchNormalization between that layer and the activation, or after the
      activation, gets that unit's gamma, beta and moving statistics back at
      their initial values;
    - its outgoing weights in every Dense/Conv layer consuming it are set to 0
      (through Dropout, pooling, global pooling, Flatten and Concatenate), so
      the model's outputs do not change at that moment when only dead units are
      recycled (a dormant unit that is not dead loses its small contribution);
    - the optimizer's state for exactly those entries (Adam/AdamW/Nadam moments,
      SGD/RMSprop/Lion momentum, accumulated gradients) is set to 0; the step
      count is kept.

    The model's output layer is never recycled. A layer whose units cannot be
    followed one to one is left out, with one warning at `on_train_begin` naming
    it and why: units merged into a residual `Add` (cutting their outgoing
    weights would also cut the skip path), fed by a model input or by anything
    but a Dense/Conv layer (Separable/Depthwise/grouped convs included), shared
    layers, layers inside nested models, a Flatten of an unknown size.

    Logs `recycled` (units recycled since the previous epoch end) and, with
    `per_layer=True`, `recycled/<layer name>` into the epoch logs; all recycles are
    in `redo.recycles` as (epoch, step or None, {layer name: unit indices}).
    Works in compiled training loops on every backend (on JAX, reading
    `self.model` from a callback syncs the trainer's state first, and the next
    step starts from the variables again).

    Put it after `DeadNeuronMonitor` in the `callbacks` list: the monitor then
    logs the units training left dead at that epoch, before they are recycled.

    Example:

    ```python
    x = np.random.default_rng(0).normal(size=(512, 8)).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    redo = keras_relu.ReDo(probe=x, every=1, per_layer=True)
    history = model.fit(x, x[:, :1], epochs=3, verbose=0, callbacks=[redo])
    history.history["recycled"], redo.recycles
    ```

    Args:
        probe: the probe inputs: an array, or a list/dict of arrays for a
            multi-input model.
        every: recycle at the end of every this many epochs.
        every_steps: recycle every this many training steps instead (None: by
            epochs).
        tau: the dormancy threshold, in (0, 1].
        batch_size: samples per forward pass of a check.
        max_samples: the most samples drawn from `probe`; None for all.
        seed: the seed of that draw and of the re-initialisations.
        per_layer: whether to log `recycled/<layer name>` too.
    """

    def __init__(self, probe=None, every=1, every_steps=None, tau=0.1, batch_size=256,
                 max_samples=2048, seed=0, per_layer=False):
        super().__init__()
        if not isinstance(tau, numbers.Real) or not 0 < tau <= 1:
            raise ValueError(f"`tau` must be a number in (0, 1], got {tau!r}.")
        for name, value in (("every", every), ("every_steps", every_steps)):
            if (value is not None or name == "every") and (
                    not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        self.probe = None if probe is None else draw_probe(probe, max_samples, seed)
        self.every, self.tau = int(every), float(tau)
        self.every_steps = None if every_steps is None else int(every_steps)
        self.batch_size, self.seed, self.per_layer = batch_size, seed, per_layer
        self.recycles, self.maps, self.skipped, self.last = [], {}, {}, None
        self._compiled = None  # (model, Probe, converted probe)
        self._pending, self._steps, self._epoch, self._epoch_start = {}, 0, 0, 0
        self._rng = random.Random(seed)
        if every_steps is not None:
            # Only then a batch hook: without one Keras may dispatch batch callbacks
            # asynchronously, which recycling in the middle of an epoch must not be.
            self.on_train_batch_end = self._on_step_end

    def on_train_begin(self, logs=None):
        self.recycles, self.last = [], None
        self._pending, self._steps, self._epoch, self._epoch_start = {}, 0, 0, 0
        self._rng = random.Random(self.seed)
        optimizer = getattr(self.model, "optimizer", None)  # None: not compiled
        if optimizer is not None:  # fails here, before any weight is touched
            optimizer_slots(optimizer, [])
        self._prepare()

    def _prepare(self):
        """The probe and unit maps of `self.model` (built once per model)."""
        if self._compiled is not None and self._compiled[0] is self.model:
            return
        if self.probe is None:
            raise ValueError(
                "ReDo has no probe data. Keras does not show callbacks the data given "
                "to fit(): pass it, e.g. ReDo(probe=x_train).")
        probe = Probe(self.model, self.probe)
        self.maps, self.skipped = unit_maps(self.model, probe) if probe.names else ({}, {})
        if self.skipped:
            warnings.warn(
                "ReDo leaves these layers out, their units cannot be followed one to one: "
                + "; ".join(f"{name}: {why}" for name, why in self.skipped.items()) + ".",
                stacklevel=3)
        self._compiled = (self.model, probe, probe.convert(self.probe) if self.maps else None)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._epoch_start = epoch, self._steps

    def _on_step_end(self, batch, logs=None):
        done = self._epoch_start + batch + 1
        if done // self.every_steps > self._steps // self.every_steps:
            self.recycle(step=done)
        self._steps = done

    def on_epoch_end(self, epoch, logs=None):
        if self.every_steps is None and (epoch + 1) % self.every == 0:
            self.recycle()
        if logs is not None:
            logs["recycled"] = sum(self._pending.values())
            if self.per_layer:
                logs.update({f"recycled/{name}": self._pending.get(name, 0) for name in self.maps})
        self._pending = {}

    def recycle(self, step=None):
        """Scores the units on the probe and recycles the dormant ones now.

        Inside `fit` the callback calls it; outside, after `set_model(model)`, it can
        be called directly. Returns {layer name: recycled unit indices} (only the
        layers with some)."""
        model = self.model  # on JAX this syncs the trainer's state into the variables
        self._prepare()
        if not self.maps:
            return {}
        _, probe, xs = self._compiled
        self.last = probe.measure(xs, batch_size=self.batch_size, tau=self.tau)
        chosen = {name: np.flatnonzero(self.last.layers[name].scores <= self.tau)
                  for name in self.maps}
        chosen = {name: units for name, units in chosen.items() if len(units)}
        if chosen:
            edits = self._edits(chosen)
            variables = [variable for variable, _, _ in edits.items.values()]
            optimizer = getattr(model, "optimizer", None)
            slots = optimizer_slots(optimizer, variables) if optimizer is not None else {}
            edits.apply(slots)
            for name, units in chosen.items():
                self._pending[name] = self._pending.get(name, 0) + len(units)
            self.recycles.append((self._epoch, step, {n: tuple(map(int, u))
                                                      for n, u in chosen.items()}))
        return {name: tuple(map(int, units)) for name, units in chosen.items()}

    def _edits(self, chosen):
        edits = _Edits()
        for name, units in chosen.items():  # incoming first: a zeroed outgoing entry wins
            unit_map = self.maps[name]
            layer = unit_map.producer
            edits.set(layer.kernel, kernel_axes(layer)[1], units,
                      self._fresh(layer.kernel_initializer, layer.kernel))
            if getattr(layer, "bias", None) is not None:
                edits.set(layer.bias, 0, units, 0.0)
            for norm, positions in unit_map.norms:
                index = positions[units].ravel()
                for kind in ("gamma", "beta", "moving_mean", "moving_variance"):
                    variable = getattr(norm, kind)
                    if variable is not None:
                        initializer = getattr(norm, f"{kind}_initializer")
                        edits.set(variable, 0, index, self._fresh(initializer, variable))
        for name, units in chosen.items():
            for layer, positions in self.maps[name].consumers:
                edits.set(layer.kernel, kernel_axes(layer)[0], positions[units].ravel(), 0.0)
        return edits

    def _fresh(self, initializer, variable):
        """A fresh draw of `initializer` for `variable` (a new seed for a seeded one)."""
        config = initializer.get_config()
        if "seed" in config:
            initializer = type(initializer).from_config(
                {**config, "seed": self._rng.randint(1, 2**31 - 1)})
        return ops.convert_to_numpy(initializer(variable.shape, dtype=variable.dtype))
