"""The SUGAR op: ReLU in the forward pass, a surrogate's derivative in the backward pass."""

import functools

import keras
from keras import KerasTensor, backend, ops

from keras_relu.sugar_backends import fused_grad
from keras_relu.surrogates import get_surrogate, surrogate_grad


def _sugar_eager(x, derivative, params, grad_fn=surrogate_grad):
    """Portable: `ops.custom_gradient` on any backend; the reference."""
    @ops.custom_gradient
    def forward(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return grad_fn(x, upstream, derivative, params)

        return ops.relu(x), grad

    return forward(x)


@functools.cache
def _torch_function():
    import torch

    class SugarFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, derivative, params):
            ctx.save_for_backward(x)
            ctx.derivative, ctx.params = derivative, params
            return torch.relu(x)

        @staticmethod
        def backward(ctx, upstream):
            (x,) = ctx.saved_tensors
            return fused_grad(x, upstream, ctx.derivative, ctx.params), None, None

    return SugarFunction


def _sugar_torch(x, derivative, params):
    """torch: plain relu when autograd records nothing (`predict` runs under `no_grad`),
    else one `autograd.Function` whose backward is compiled by Inductor into one pass."""
    import torch

    if not (torch.is_grad_enabled() and x.requires_grad):
        return torch.relu(x)
    return _torch_function().apply(x, derivative, params)


def _sugar_tensorflow(x, derivative, params):
    """TensorFlow: plain relu when no gradient tape records (`predict`), so the graph
    optimizer fuses it into the convolution or matmul before it, as it does ReLU; else the
    portable op with its gradient compiled by XLA into one pass. (A gradient taken with no
    tape, `tf.gradients` in a graph, is therefore ReLU's.)"""
    if not _tensorflow_tape_may_record():
        import tensorflow as tf

        return tf.nn.relu(x)
    return _sugar_eager(x, derivative, params, grad_fn=fused_grad)


def _tensorflow_tape_may_record():
    """TensorFlow's own test for a recording gradient tape (Keras takes gradients with
    `tf.GradientTape`); True where TensorFlow has no such test."""
    try:
        from tensorflow.python.eager.record import could_possibly_record
    except ImportError:
        return True
    return could_possibly_record()


_FAST = {"torch": _sugar_torch, "tensorflow": _sugar_tensorflow}


class _Sugar(keras.Operation):
    """Symbolic form of `sugar`, so it also works on Functional-API tensors."""

    def __init__(self, surrogate, params, name=None):
        super().__init__(name=name)
        self.surrogate = surrogate
        self.params = params

    def call(self, x):
        return _sugar_op()(x, get_surrogate(self.surrogate).derivative, self.params)

    def compute_output_spec(self, x):
        return KerasTensor(x.shape, dtype=x.dtype, sparse=False)


def sugar(x, surrogate="bsilu", **params):
    """SUGAR: `y = relu(x)`, with `dL/dx = dL/dy * s'(x)` for the surrogate `s`.

    The forward pass is `keras.ops.relu(x)` exactly, so sparsity and inference
    cost stay those of ReLU; the backward pass uses the surrogate's derivative,
    so units whose pre-activation is negative (dead units) still get gradient.
    Horuz et al. 2025, "The Resurrection of the ReLU", arXiv 2505.22074.

    Args:
        x: a tensor of any backend, or a symbolic Keras tensor.
        surrogate: a name from `keras_relu.SURROGATES`.
        **params: the surrogate's parameters (e.g. `a=1.67` for `bsilu`).
    """
    spec = get_surrogate(surrogate)
    resolved = spec.resolve(params)
    if keras.utils.is_keras_tensor(x):
        return _Sugar(spec.name, resolved).symbolic_call(x)
    return _sugar_op()(ops.convert_to_tensor(x), spec.derivative, resolved)


def _sugar_op():
    """The active backend's fast path, else the portable `ops.custom_gradient` version."""
    return _FAST.get(backend.backend(), _sugar_eager)
