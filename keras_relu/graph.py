"""A model's functional graph: its layer calls, with producers and consumers by tensor.

`nodes` and `functional` give the layer calls of a Functional or Sequential model
(the one place that reads Keras' private graph attributes).
"""

from collections import Counter, defaultdict

import keras
from keras import layers, tree


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


WEIGHT_LAYERS = (layers.Dense, layers.EinsumDense, layers.Conv1D, layers.Conv2D,
                 layers.Conv3D, layers.Conv1DTranspose, layers.Conv2DTranspose,
                 layers.Conv3DTranspose, layers.SeparableConv1D, layers.SeparableConv2D,
                 layers.DepthwiseConv1D, layers.DepthwiseConv2D)
