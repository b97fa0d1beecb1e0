"""A model's functional graph, and where the units of a monitored layer live in the weights.

`nodes` and `functional` give the layer calls of a Functional or Sequential model
(the one place that reads Keras' private graph attributes). `unit_maps` follows
the units of each monitored layer back to the Dense/Conv layer that produces
them and forward to the Dense/Conv layers that consume them, for `ReDo`.
"""

import dataclasses
from collections import Counter, defaultdict

import keras
import numpy as np
from keras import layers, tree

from keras_relu.layers import SugarReLU


def _graph_of(model):
    """(functional model, its nodes inputs first) of `model`, or (None, None).

    Keras 3 has no public API for a model's graph. This is the one function that
    reads its private attributes: `Sequential._functional` (the Functional model a
    built Sequential model wraps; None while unbuilt) and `Functional._nodes_by_depth`.
    The nodes themselves are read through their public `operation`, `arguments`,
    `input_tensors` and `outputs`.
    """
    if isinstance(model, keras.Sequential):
        model = model._functional
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        return None, None
    by_depth = model._nodes_by_depth
    return model, [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]
                   if not node.is_input and node.operation is not None]


def functional(model):
    """The Functional model behind `model` (itself, or a Sequential's), or None."""
    return _graph_of(model)[0]


def nodes(model):
    """The layer calls of `model`'s graph, inputs first, or None without a graph."""
    return _graph_of(model)[1]


class Graph:
    """The nodes of one model's top-level graph, with producers and consumers by tensor."""

    def __init__(self, model):
        self.model, self.nodes = _graph_of(model)
        self.nodes = self.nodes or []
        self._producer = {id(t): n for n in self.nodes for t in n.outputs}
        self._consumers = defaultdict(list)
        for node in self.nodes:
            for t in {id(t): t for t in node.input_tensors}.values():
                self._consumers[id(t)].append(node)
        self.outputs = {id(t) for t in tree.flatten(self.model.outputs)} if self.model else set()
        self.calls = Counter(id(n.operation) for n in self.nodes)

    def producer(self, tensor):
        """The node whose output `tensor` is; None for a model input."""
        return self._producer.get(id(tensor))

    def consumers(self, tensor):
        return self._consumers.get(id(tensor), [])

    def node_of(self, layer):
        """The one node calling `layer`; raises `Unmappable` for none or several."""
        found = [n for n in self.nodes if n.operation is layer]
        if len(found) != 1:
            raise Unmappable("it sits inside a nested model" if not found else
                             f"it is called {len(found)} times (a shared layer)")
        return found[0]


class Unmappable(Exception):
    """A monitored layer whose units cannot be followed one to one (the message says why)."""


WEIGHT_LAYERS = (layers.Dense, layers.EinsumDense, layers.Conv1D, layers.Conv2D,
                 layers.Conv3D, layers.Conv1DTranspose, layers.Conv2DTranspose,
                 layers.Conv3DTranspose, layers.SeparableConv1D, layers.SeparableConv2D,
                 layers.DepthwiseConv1D, layers.DepthwiseConv2D)
# The ones ReDo recycles (see `kernel_axes`); Separable/Depthwise convs subclass none of them.
_DENSE, _CONV = (layers.Dense,), (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_CONV_T = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_PASS = (layers.Dropout, layers.SpatialDropout1D, layers.SpatialDropout2D, layers.SpatialDropout3D,
         layers.GaussianNoise, layers.GaussianDropout, layers.AlphaDropout,
         layers.ActivityRegularization, layers.Identity)
_UNITWISE = (SugarReLU, layers.ReLU, layers.LeakyReLU, layers.PReLU, layers.ELU)
_POOL = (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
         layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D)
_GLOBAL = (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
           layers.GlobalAveragePooling3D, layers.GlobalMaxPooling1D,
           layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D)
_MERGE = (layers.Add, layers.Subtract, layers.Average, layers.Multiply, layers.Maximum,
          layers.Minimum)
_NOT_UNITWISE = (keras.activations.softmax, keras.activations.log_softmax)


def kernel_axes(layer):
    """(incoming axis, unit axis) of `layer`'s kernel; None for a layer ReDo cannot recycle."""
    if getattr(layer, "groups", 1) != 1:
        return None
    if isinstance(layer, _DENSE + _CONV):
        return -2, -1
    if isinstance(layer, _CONV_T):
        return -1, -2
    return None


def _channel_axis(layer, rank):
    if getattr(layer, "data_format", None) == "channels_first":
        return 1
    return rank - 1


@dataclasses.dataclass
class UnitMap:
    """Where the units of one monitored layer live: unit u is column u of `producer`'s
    kernel; `positions[u]` its entries along the incoming axis of each consumer kernel
    or the axis of each batch normalisation."""

    name: str
    units: int
    producer: keras.layers.Layer
    norms: list  # [(BatchNormalization, positions (units, k))]
    consumers: list  # [(weight layer, positions (units, k))]


def _weight_layer(graph, layer, axis, rank, role):
    if kernel_axes(layer) is None:
        raise Unmappable(f"its {role} {layer.name} ({type(layer).__name__}) is not a Dense/Conv "
                         "layer ReDo can recycle (grouped, separable and depthwise are not)")
    if graph.calls[id(layer)] != 1:
        raise Unmappable(f"its {role} {layer.name} is a shared layer")
    if not layer.trainable:
        raise Unmappable(f"its {role} {layer.name} is frozen (trainable=False)")
    if not isinstance(layer.kernel, keras.Variable):
        raise Unmappable(f"its {role} {layer.name} has a quantised or LoRA kernel")
    if _channel_axis(layer, rank) != axis:
        raise Unmappable(f"its {role} {layer.name} works along another axis than its units")
    return layer


def _single_path(graph, tensor, who):
    if id(tensor) in graph.outputs or len(graph.consumers(tensor)) != 1:
        raise Unmappable(f"the output of {who} is used elsewhere too (a skip path or a model "
                         "output); re-initialising its weights would change that path")


def _incoming(graph, node, axis):
    """(producing weight layer, [batch normalisations between]) of `node`'s units."""
    layer, rank = node.operation, len(node.outputs[0].shape)
    if isinstance(layer, WEIGHT_LAYERS):
        return _weight_layer(graph, layer, axis, rank, "layer"), []
    norms = []
    while True:
        if len(node.input_tensors) != 1:
            raise Unmappable(f"{node.operation.name} has {len(node.input_tensors)} inputs")
        tensor = node.input_tensors[0]
        node = graph.producer(tensor)
        if node is None:
            raise Unmappable("no Dense or Conv layer feeds it (its input is a model input)")
        op = node.operation
        _single_path(graph, tensor, op.name)
        if isinstance(op, layers.BatchNormalization) and op.axis % rank == axis:
            if graph.calls[id(op)] != 1:
                raise Unmappable(f"its batch normalisation {op.name} is a shared layer")
            norms.append(op)
        elif isinstance(op, WEIGHT_LAYERS):
            return _weight_layer(graph, op, axis, rank, "producer"), norms
        elif not isinstance(op, _PASS):
            raise Unmappable(f"it is fed by {op.name} ({type(op).__name__}), not by a "
                             "Dense or Conv layer")


def _flatten_positions(shape, axis, data_format, positions):
    """Where each unit's entries land in the output of a Flatten of `shape`."""
    dims = shape[1:]
    if any(d is None for d in dims):
        raise Unmappable("it is flattened from a tensor of unknown size")
    unit = np.arange(shape[axis]).reshape([-1 if i == axis - 1 else 1 for i in range(len(dims))])
    unit = np.broadcast_to(unit, dims)
    if data_format == "channels_first" and len(dims) > 1:
        unit = np.moveaxis(unit, 0, -1)  # Flatten(data_format="channels_first") transposes
    flat = unit.ravel()
    where = np.stack([np.flatnonzero(flat == c) for c in range(shape[axis])])  # (C, S)
    return where[positions].reshape(len(positions), -1)


def _outgoing(graph, tensor, axis, positions, found):
    """Appends to `found` (norms, consumers) every place `tensor`'s units reach."""
    if id(tensor) in graph.outputs:
        raise Unmappable("its units reach a model output without a weight layer between "
                         "(the output layer is never recycled)")
    rank = len(tensor.shape)
    for node in graph.consumers(tensor):
        op, out = node.operation, node.outputs[0]
        if isinstance(op, WEIGHT_LAYERS):
            found[1].append((_weight_layer(graph, op, axis, rank, "consumer"), positions))
        elif isinstance(op, layers.BatchNormalization) and op.axis % rank == axis:
            if graph.calls[id(op)] != 1:
                raise Unmappable(f"its consumer {op.name} is a shared layer")
            found[0].append((op, positions))
            _outgoing(graph, out, axis, positions, found)
        elif isinstance(op, _PASS + _UNITWISE) or (
                isinstance(op, layers.Activation) and op.activation not in _NOT_UNITWISE):
            _outgoing(graph, out, axis, positions, found)
        elif isinstance(op, _POOL + _GLOBAL) and _channel_axis(op, rank) == axis:
            keeps = not isinstance(op, _GLOBAL) or getattr(op, "keepdims", False)
            _outgoing(graph, out, axis if keeps else 1, positions, found)
        elif isinstance(op, layers.Flatten):
            _outgoing(graph, out, 1, _flatten_positions(tensor.shape, axis, op.data_format,
                                                         positions), found)
        elif isinstance(op, layers.Concatenate) and op.axis % rank == axis:
            offset = 0
            for t in node.input_tensors:
                if t is tensor:
                    _outgoing(graph, out, axis, positions + offset, found)
                offset += t.shape[axis]
        elif isinstance(op, _MERGE):
            raise Unmappable(f"it is merged with another path in {op.name} ({type(op).__name__}): "
                             "cutting its outgoing weights would cut that path too")
        else:
            raise Unmappable(f"its output feeds {op.name} ({type(op).__name__}), where its units "
                             "cannot be followed one to one")


def unit_maps(model, probe):
    """({name: UnitMap}, {name: why it is left out}) for the monitored layers of `probe`."""
    graph = Graph(model)
    axes = dict(zip(probe.names, probe.axes))
    units = dict(zip(probe.names, probe.units))
    maps, skipped = {}, {}
    for name, layer in probe.layers.items():
        try:
            node = graph.node_of(layer)
            out = node.outputs[0]
            axis = axes[name] % len(out.shape)
            producer, norms = _incoming(graph, node, axis)
            identity = np.arange(units[name])[:, None]
            found = ([(bn, identity) for bn in norms], [])
            _outgoing(graph, out, axis, identity, found)
        except Unmappable as why:
            skipped[name] = str(why)
            continue
        maps[name] = UnitMap(name, units[name], producer, *found)
    return maps, skipped

