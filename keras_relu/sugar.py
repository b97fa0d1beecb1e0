"""The SUGAR op: ReLU in the forward pass, a surrogate's derivative in the backward pass."""

from keras import KerasTensor, backend, ops
from keras.src.backend import any_symbolic_tensors
from keras.src.ops.operation import Operation

from keras_relu.surrogates import get_surrogate

_HALF_DTYPES = ("float16", "bfloat16")


def _surrogate_grad(x, upstream, derivative, params):
    """`upstream * s'(x)`; half-precision inputs are differentiated in float32."""
    dtype = backend.standardize_dtype(x.dtype)
    if dtype in _HALF_DTYPES:
        slope = ops.cast(derivative(ops.cast(x, "float32"), **params), dtype)
    else:
        slope = derivative(x, **params)
    return ops.multiply(upstream, slope)


def _sugar_eager(x, derivative, params):
    @ops.custom_gradient
    def forward(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return _surrogate_grad(x, upstream, derivative, params)

        return ops.relu(x), grad

    return forward(x)


class _Sugar(Operation):
    """Symbolic form of `sugar`, so it also works on Functional-API tensors."""

    def __init__(self, surrogate, params, name=None):
        super().__init__(name=name)
        self.surrogate = surrogate
        self.params = params

    def call(self, x):
        return _sugar_eager(x, get_surrogate(self.surrogate).derivative, self.params)

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
    if any_symbolic_tensors((x,)):
        return _Sugar(spec.name, resolved).symbolic_call(x)
    return _sugar_eager(ops.convert_to_tensor(x), spec.derivative, resolved)
