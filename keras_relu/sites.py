"""Where a model computes ReLU: the survey `replace_activations` acts on.

A *site* is a layer that computes plain ReLU, `max(x, 0)`:

- `Activation("relu")` (or `Activation(keras.activations.relu)`);
- `ReLU()` without `max_value`, `negative_slope` or `threshold`;
- the `activation="relu"` argument of a weight layer (Dense, EinsumDense, the
  convolutions and their transposes, separable and depthwise convolutions).

Everything else that computes a ReLU is listed as skipped with its reason, never
changed: `ReLU(max_value=6)` (unless asked for), other ReLU variants, a ReLU that
gates another path (its output multiplies another tensor, as in MobileNetV3's
hard-sigmoid), a ReLU at a model output, recurrent layers' internal activations and
ReLUs inside a custom layer's own code. Models are walked through their graphs
(`keras_relu.graph`), nested Functional and Sequential models at any depth.
"""

import dataclasses
import inspect

import keras
from keras import layers, tree

from keras_relu.graph import WEIGHT_LAYERS, Graph, functional

LAYER, ARGUMENT = "layer", "argument"  # how a site is replaced: the layer, or after it
_RECURRENT = (layers.RNN, layers.Bidirectional, layers.ConvLSTM1D, layers.ConvLSTM2D,
              layers.ConvLSTM3D)
_MULTIPLY = (layers.Multiply,)
_OWN_MODULES = ("keras.", "keras_relu.")


@dataclasses.dataclass(frozen=True)
class Site:
    """One place of a model that computes a ReLU: `path` (`outer/inner/layer`), what it is,
    and what became of it (the new layer, or why it was skipped)."""

    path: str
    kind: str
    outcome: str


@dataclasses.dataclass
class Survey:
    """The decision for every ReLU layer of a model: `plan[id(layer)]` is `LAYER` or
    `ARGUMENT` for a site to replace; `skipped` lists the rest with reasons."""

    plan: dict = dataclasses.field(default_factory=dict)
    kinds: dict = dataclasses.field(default_factory=dict)  # id(layer) -> (path, kind)
    skipped: list = dataclasses.field(default_factory=list)


def relu_kind(layer, relu6=False):
    """(how to replace, description) for a site; (None, description) for a ReLU that is
    not plain; (None, None) for a layer that computes no ReLU."""
    cls = type(layer).__name__
    if isinstance(layer, layers.ReLU):
        args = {"max_value": layer.max_value, "negative_slope": layer.negative_slope,
                "threshold": layer.threshold}
        given = {k: v for k, v in args.items() if v not in (None, 0, 0.0)}
        if not given:
            return LAYER, "ReLU()"
        shown = "ReLU(" + ", ".join(f"{k}={v:g}" for k, v in given.items()) + ")"
        if relu6 and set(given) == {"max_value"} and float(given["max_value"]) == 6.0:
            return LAYER, shown
        return None, shown
    activation = getattr(layer, "activation", None)
    if isinstance(layer, layers.Activation):
        if activation is keras.activations.relu:
            return LAYER, "Activation('relu')"
        if activation is keras.activations.relu6:
            return (LAYER if relu6 else None), "Activation('relu6')"
        return None, None
    if activation in (keras.activations.relu, keras.activations.relu6):
        shown = f"{cls}(activation='{activation.__name__}')"
        if isinstance(layer, _RECURRENT):
            return None, shown
        if isinstance(layer, WEIGHT_LAYERS) and (activation is keras.activations.relu or relu6):
            return ARGUMENT, shown
        return None, shown
    if _custom_code_mentions_relu(layer):
        return None, f"{cls} (custom layer)"
    return None, None


def _custom_code_mentions_relu(layer):
    """Whether `layer` is a custom layer whose own source code mentions ReLU."""
    cls = type(layer)
    if cls.__module__.startswith(_OWN_MODULES) or isinstance(layer, keras.Model):
        return False
    try:
        return "relu" in inspect.getsource(cls).lower()
    except (OSError, TypeError):  # no source (built in C, defined in a notebook cell)
        return False


def _skip_reason(layer, kind, relu6):
    if isinstance(layer, _RECURRENT):
        return "a recurrent layer's internal activation is left alone"
    if "(custom layer)" in kind:
        return "a ReLU inside a custom layer's own code is not changed"
    if "6" in kind and not relu6:
        return "ReLU6 is not plain ReLU (relu6=True replaces it, changing the forward pass above 6)"
    if isinstance(layer, WEIGHT_LAYERS) or isinstance(layer, layers.ReLU) or \
            isinstance(layer, layers.Activation):
        return "not plain ReLU"
    return f"the activation is inside {type(layer).__name__}'s own computation"


def _gates(graph, tensor, depth=0):
    """Whether `tensor` gates another path: it reaches a product, through one-input
    operations (MobileNetV3's hard-sigmoid `ReLU6(x + 3) / 6` times `x`). The signal a
    gate multiplies is no gate: a factor from which every other factor is computed (the
    input of a squeeze-and-excitation block, times the gate made from it)."""
    if depth > 8:
        return False
    for node in graph.consumers(tensor):
        op = node.operation
        operands = {id(t): t for t in node.input_tensors}
        if isinstance(op, _MULTIPLY) or (not isinstance(op, layers.Layer)
                                         and "multiply" in type(op).__name__.lower()
                                         and len(operands) > 1):
            others = [t for key, t in operands.items() if key != id(tensor)]
            if not all(_computed_from(graph, other, tensor) for other in others):
                return True
        elif not isinstance(op, layers.Layer) and len(operands) == 1 and \
                _gates(graph, node.outputs[0], depth + 1):
            return True
    return False


def _computed_from(graph, tensor, source, limit=10_000):
    """Whether `source` is among the tensors `tensor` is computed from."""
    stack, seen = [tensor], set()
    while stack and len(seen) < limit:
        current = stack.pop()
        if current is source:
            return True
        node = graph.producer(current)
        if node is None or id(current) in seen:
            continue
        seen.add(id(current))
        stack.extend(node.input_tensors)
    return False


def survey(model, relu6=False, where=None):
    """The `Survey` of `model` (Functional or Sequential, nested models included)."""
    found = Survey()
    _walk(model, "", None, found, relu6, where)
    return found


def _walk(model, prefix, finals, found, relu6, where):
    """Decide every layer of `model`; `finals`: ids of its output tensors that are outputs
    of the outermost model (None: all of them, it is the outermost)."""
    graph = Graph(model)
    if graph.model is None:  # an unbuilt Sequential: its layers in order, the last the output
        calls = [(layer, layer is model.layers[-1], False) for layer in model.layers]
    else:
        finals = graph.outputs if finals is None else finals
        calls = []
        for node in graph.nodes:
            outs = [id(t) for t in node.outputs]
            if functional(node.operation) is not None:
                inner = functional(node.operation)
                inner_finals = {id(t) for t, o in zip(tree.flatten(inner.outputs), outs)
                                if o in finals}
                _walk(node.operation, f"{prefix}{node.operation.name}/", inner_finals,
                      found, relu6, where)
                continue
            output = any(o in finals for o in outs)
            calls.append((node.operation, output, _gates(graph, node.outputs[0])))
    reasons = {}
    for layer, output, gate in calls:
        if not isinstance(layer, layers.Layer) or isinstance(layer, keras.Model):
            continue
        why = reasons.setdefault(id(layer), [layer, set()])[1]
        if output:
            why.add("the output layer is left alone")
        if gate:
            why.add("it gates another path (its output multiplies another tensor)")
    for layer, why in reasons.values():
        _decide(layer, why, prefix, found, relu6, where)


def _decide(layer, why, prefix, found, relu6, where):
    how, kind = relu_kind(layer, relu6)
    if kind is None or id(layer) in found.kinds:
        return
    path = prefix + layer.name
    found.kinds[id(layer)] = (path, kind)
    if how is None:
        why = {_skip_reason(layer, kind, relu6), *why}
    elif where is not None and not where(layer):
        why = {"excluded by `where`"}
    if why:
        found.skipped.append(Site(path, kind, "; ".join(sorted(why))))
    else:
        found.plan[id(layer)] = how
