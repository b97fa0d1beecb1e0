"""Dead-neuron metrics: the definitions, the `Probe` that measures them, `neuron_stats`.

`DeadNeuronMonitor` (keras_relu.monitor) and `ReDo` (keras_relu.redo) measure through
the same `Probe`; the figures it returns are `keras_relu.stats.NeuronStats`.

Definitions (the same for every activation and backend):

- A **unit** is one output feature of a Dense layer, one channel of a
  convolution (reduce over batch and all spatial positions; honour
  `data_format`).
- A unit is **dead** on a probe set when its activation output is <= 0 for
  every probe sample and position. For ReLU and SUGAR this is "always exactly
  zero"; for leaky_relu, prelu, elu, selu, gelu, silu and mish it is "always
  in the negative regime" (their output is <= 0 exactly when the input is
  <= 0).
- **Dormant** (Sokar et al. 2023, tau-dormant):
  score_i = mean |h_i| / (mean over units k of mean |h_k| + 1e-9);
  dormant when score_i <= tau. Default tau = 0.1; tau is a parameter.
- **Zero fraction**: the share of all activation entries that are exactly 0
  (ReLU's sparsity).
- **Revived**: units that were dead at the previous check and are alive now
  (count), and the cumulative count over training.
- Always measured in inference mode (`training=False`), on a fixed probe set.

Monitored layers: every activation layer (`SugarReLU`, Keras `ReLU`,
`LeakyReLU`, `PReLU`, `ELU`, `Activation` other than linear, and whatever
`keras_relu.activation_layer` returns) and every Dense/Conv layer whose
built-in `activation=` is not linear, in Functional and Sequential models and
the Functional/Sequential models nested in them. Softmax (a layer or a built-in
`activation=`) is left out: it normalises across units, so no unit of it dies,
and counting an output softmax would dilute the figures of the hidden layers.

The probe set goes once through a multi-output probe model in batches; each
batch is reduced on the device, inside one compiled function per backend, to
per-unit max, sum |h| and zero count, which are accumulated on the device.
Memory is O(units), never O(samples x units).
"""

import warnings

import keras
import numpy as np
from keras import layers, ops, tree

from keras_relu.graph import WEIGHT_LAYERS, Graph, functional
from keras_relu.layers import SugarReLU
from keras_relu.reductions import runner
from keras_relu.stats import LayerStats, NeuronStats, figures  # noqa: F401 (public here too)

_ACTIVATION_LAYERS = (SugarReLU, layers.ReLU, layers.LeakyReLU, layers.PReLU,
                      layers.ELU, layers.Activation)
# Normalising output activations are not unit-wise: no unit of theirs can die.
_NOT_UNITWISE = (None, keras.activations.linear, keras.activations.softmax,
                 keras.activations.log_softmax)


def _is_monitored(layer):
    if isinstance(layer, WEIGHT_LAYERS) or isinstance(layer, layers.Activation):
        return getattr(layer, "activation", None) not in _NOT_UNITWISE
    return isinstance(layer, _ACTIVATION_LAYERS)


def _unit_axis(layer, node, graph):
    """The unit axis of `layer`'s output: last, or 1 for channels_first."""
    for _ in range(64):
        if getattr(layer, "data_format", None) is not None:
            return 1 if layer.data_format == "channels_first" else -1
        if isinstance(layer, (layers.Dense, layers.EinsumDense)):
            return -1
        if isinstance(layer, layers.BatchNormalization):
            return layer.axis if layer.axis == 1 else -1
        inputs = node.input_tensors
        node = graph.producer(inputs[0]) if len(inputs) == 1 else None
        if node is None:
            break
        layer = node.operation
    return 1 if keras.config.image_data_format() == "channels_first" else -1


def _collect(model):
    """[(layer, tensor, unit axis)] for the monitored layers, in `model`'s graph."""
    graph = Graph(model)
    found = []
    for node in graph.nodes:
        op = node.operation
        inner_model = functional(op)
        if inner_model is not None:
            inner = _collect(op)
            if inner:
                sub = keras.Model(inner_model.inputs, [t for _, t, _ in inner])
                outs = tree.flatten(sub(*node.arguments.args, **node.arguments.kwargs))
                found += [(lay, t, ax) for (lay, _, ax), t in zip(inner, outs)]
        elif _is_monitored(op) and len(node.outputs) == 1:
            found.append((op, node.outputs[0], _unit_axis(op, node, graph)))
    return found


def _check_probe(model, x):
    """Raises a clear ValueError when `x` does not fit `model`'s inputs."""
    expected = [tuple(t.shape)[1:] for t in tree.flatten(model.inputs)]
    got = [tuple(np.shape(a))[1:] for a in tree.flatten(x)]
    ok = len(got) == len(expected) and all(
        len(g) == len(e) and all(d is None or d == gd for d, gd in zip(e, g))
        for g, e in zip(got, expected))
    if not ok:
        raise ValueError(
            f"The probe set does not fit the model {model.name!r}: each sample has "
            f"shape {got if len(got) > 1 else got[0]}, the model expects "
            f"{expected if len(expected) > 1 else expected[0]} (None: any size).")


def _samples(x):
    """The arrays of `x`, checked: each has a sample axis, samples, and the same count."""
    flat = tree.flatten(x)
    bad = [a for a in flat if isinstance(a, (str, bytes)) or len(getattr(a, "shape", ())) < 1]
    if not flat or bad:
        got = type(bad[0] if bad else x).__name__
        raise ValueError(
            "The probe must be an array of samples (a NumPy array or a backend tensor, first "
            f"axis the samples), or a list/dict of such arrays, one per model input; got {got}.")
    counts = {int(a.shape[0]) for a in flat}
    if counts == {0}:
        raise ValueError("The probe has no samples (its arrays have length 0); give it at "
                         "least one sample, e.g. x_train or x_val.")
    if len(counts) != 1:
        raise ValueError(f"The probe's arrays hold different numbers of samples: {sorted(counts)}.")
    return [a if isinstance(a, np.ndarray) else ops.convert_to_numpy(a) for a in flat]


def draw_probe(x, max_samples=2048, seed=0):
    """Up to `max_samples` samples of `x`, drawn once with `seed` (all if fewer).

    Raises `ValueError` unless `x` is an array of samples (or a list/dict of them)."""
    flat = _samples(x)
    n = len(flat[0])
    if max_samples is None or n <= max_samples:
        return tree.pack_sequence_as(x, flat)
    index = np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))
    return tree.pack_sequence_as(x, [a[index] for a in flat])


class Probe:
    """The monitored layers of one model, compiled into one multi-output probe model.

    `neuron_stats`, `DeadNeuronMonitor` and `ReDo` all measure through it. Given
    sample inputs `x`, it first builds an unbuilt Sequential model on them and checks
    that they fit the model's inputs (a `ValueError` saying what is expected).

    Attributes:
        names: one name per monitored output (a layer called twice gets one name).
        layers: the monitored layer of each name.
        axes, units: the unit axis and the number of units of each output.
    """

    def __init__(self, model, x=None):
        if x is not None:
            _ensure_built(model, x)
            _check_probe(model, x)
        self.model = model
        found = _collect(model)
        self.names, by_id, self.layers = [], {}, {}
        for layer, _, _ in found:  # one name per layer; a layer called twice merges
            if id(layer) not in by_id:
                name, k = layer.name, 1
                while name in by_id.values():
                    name, k = f"{layer.name}_{k}", k + 1
                by_id[id(layer)] = name
                self.layers[name] = layer
            self.names.append(by_id[id(layer)])
        self.axes = [ax % len(t.shape) for _, t, ax in found]
        self.units = [int(t.shape[ax]) for (_, t, _), ax in zip(found, self.axes)]
        self.shapes = [tuple(t.shape) for _, t, _ in found]
        if found:
            self.probe = keras.Model(model.inputs, [t for _, t, _ in found],
                                     name=f"{model.name}_probe")
            self.run = runner(self.probe, self.axes, keras.backend.backend())
        else:
            warnings.warn(
                f"Model {model.name!r} has no monitored layer (no activation layer and no "
                "Dense/Conv layer with a non-linear `activation=`); no neuron figures are "
                "computed or logged.", stacklevel=3)

    def convert(self, x):
        """`x` as backend tensors of the model's input dtypes (floats only)."""
        dtypes = [t.dtype for t in tree.flatten(self.model.inputs)]
        flat = [ops.convert_to_tensor(a, dtype=d if "float" in str(a.dtype) else None)
                for a, d in zip(tree.flatten(x), dtypes)]
        return tree.pack_sequence_as(x, flat)

    def _positions(self, xs):
        shapes = self.shapes
        if any(d is None for s in shapes for d in s[1:]):
            spec = self.probe.compute_output_spec(tree.map_structure(
                lambda a: keras.KerasTensor((1, *a.shape[1:]), a.dtype), xs))
            shapes = [tuple(t.shape) for t in tree.flatten(spec)]
        return [int(np.prod([d for i, d in enumerate(s) if i not in (0, ax)]))
                for s, ax in zip(shapes, self.axes)]

    def measure(self, xs, batch_size=256, tau=0.1):
        """The figures over `xs` (converted with `convert`), in batches."""
        n = int(tree.flatten(xs)[0].shape[0])
        acc = [(ops.full((u,), -np.inf, "float32"), ops.zeros((u,), "float32"),
                ops.zeros((u,), "int32")) for u in self.units]
        acc = self.run(acc, xs, batch_size)
        acc = tree.map_structure(ops.convert_to_numpy, acc)  # to the host, once
        merged = {}  # name -> [max, sum |h|, zeros, entries per unit]
        for name, pos, (hmax, hsum, zeros) in zip(self.names, self._positions(xs), acc):
            m = merged.setdefault(name, [hmax, 0.0, 0, 0])
            m[0] = np.maximum(m[0], hmax)
            m[1], m[2], m[3] = m[1] + hsum.astype("float64"), m[2] + zeros.astype("int64"), m[3] + n * pos
        return figures(merged, tau)


def _ensure_built(model, x):
    if isinstance(model, keras.Sequential) and functional(model) is None:
        model(tree.map_structure(lambda a: a[:1], x), training=False)
    if functional(model) is None:
        raise ValueError(
            f"neuron_stats needs a Functional or Sequential model; {model.name!r} is "
            f"a subclassed {type(model).__name__}. Wrap its layers in a Functional model.")


def neuron_stats(model, x, batch_size=256, tau=0.1):
    """Dead, dormant and zero fractions of every monitored layer of `model` on `x`.

    Definitions are in `keras_relu.neurons`' docstring: a unit is dead when its
    output is <= 0 for every sample and position of `x`; tau-dormant when
    mean |h_i| / (mean over units k of mean |h_k| + 1e-9) <= `tau`; the zero
    fraction is the share of entries exactly 0. Inference mode
    (`training=False`); all of `x` is used.

    Args:
        model: a built Functional or Sequential model (nested ones included).
        x: the probe inputs, an array (or a list/dict of arrays, one per input),
            with at least one sample (else a `ValueError`).
        batch_size: samples per forward pass.
        tau: the dormancy threshold.

    Returns:
        `NeuronStats`: overall `units`, `dead_count`, `dead_fraction`,
        `dormant_fraction`, `zero_fraction`, and `layers`, a dict of
        `LayerStats` by layer name (with `dead_units`, the dead unit indices).
    """
    x = draw_probe(x, max_samples=None)
    probe = Probe(model, x)
    if not probe.names:
        return figures({}, tau)
    return probe.measure(probe.convert(x), batch_size=batch_size, tau=tau)
