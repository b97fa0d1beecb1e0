"""Surrogate functions for SUGAR: a value s(x) and its exact derivative s'(x).

Every function is written with `keras.ops`, so it runs on any backend. The
derivatives are arranged to stay finite for large |x| in float32, float16 and
bfloat16, to avoid cancellation (mish, gelu), and to cost few element-wise
passes, since the backward pass of every SUGAR layer evaluates one.
"""

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Callable, Mapping

from keras import activations, backend, ops

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """A named surrogate: `value(x, **params)`, `derivative(x, **params)`, defaults.

    SUGAR uses `derivative` in the backward pass; `value` (optional) is the function
    itself, for plots and forward-gradient injection. Get one with `get_surrogate(name)`;
    add one with `register_surrogate`.

    Attributes:
        name: the registry name (`keras_relu.SURROGATES`).
        derivative: `derivative(x, **params)`, in `keras.ops`.
        value: `value(x, **params)`, or None.
        defaults: each parameter's default value (e.g. `{"a": 1.67}` for B-SiLU).
    """

    name: str
    derivative: Callable
    value: Callable | None = None
    defaults: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def resolve(self, params):
        """Defaults overridden by `params`, checked: known names, finite real numbers."""
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(
                f"Unknown parameter(s) {', '.join(unknown)} for surrogate "
                f"'{self.name}'. Valid parameters: {valid}."
            )
        resolved = dict(self.defaults)
        for key, val in params.items():
            if isinstance(val, bool) or not isinstance(val, numbers.Real):
                raise TypeError(
                    f"Surrogate '{self.name}' parameter '{key}' must be a real "
                    f"number, got {type(val).__name__}: {val!r}."
                )
            if not math.isfinite(val):
                raise ValueError(
                    f"Surrogate '{self.name}' parameter '{key}' must be finite, "
                    f"got {val!r}."
                )
            resolved[key] = float(val)
        return resolved


def _bsilu(x, a):
    return (x + a) * ops.sigmoid(x) - a / 2.0


def _bsilu_grad(x, a):
    # One sigmoid: 1 - sig loses relative precision only where (x + a)(1 - sig)
    # is below 1e-3 of the result, so s' stays within 1e-6 relative.
    sig = ops.sigmoid(x)
    return sig * (1.0 + (x + a) * (1.0 - sig))


def _nelu(x, a):
    return ops.where(x > 0, x, -a / (1.0 + x * x))


def _nelu_grad(x, a):
    q = 1.0 / (1.0 + x * x)  # 0, not inf, when x * x overflows
    return ops.where(x > 0, ops.ones_like(x), (2.0 * a) * x * q * q)


def _elu_grad(x, alpha):
    return ops.where(x > 0, ops.ones_like(x), alpha * ops.exp(ops.minimum(x, 0.0)))


def _selu_grad(x):
    neg = (_SELU_SCALE * _SELU_ALPHA) * ops.exp(ops.minimum(x, 0.0))
    return ops.where(x > 0, ops.full_like(x, _SELU_SCALE), neg)


def _gelu_grad(x):
    # erf, not erfc: Inductor evaluates erfc 2.4x and XLA 1.2x slower. TensorFlow's erf stops
    # 1.8e-7 short of -1, so below x = -8 (cdf < 1e-15) the cdf is 0 outright.
    cdf = ops.where(x < -8.0, 0.0, 0.5 + 0.5 * ops.erf(x / _SQRT_2))
    pdf = _INV_SQRT_2PI * ops.exp(-0.5 * ops.square(x))
    return cdf + x * pdf


def _silu_grad(x):
    sig = ops.sigmoid(x)
    return sig * (1.0 + x * (1.0 - sig))


def _leaky_relu_grad(x, alpha):
    return ops.where(x > 0, ops.ones_like(x), ops.full_like(x, alpha))


def _mish_grad(x):
    # tanh(softplus(x)) = n / (n + 2) and 1 - tanh^2 = 4 (n + 1) / (n + 2)^2 with
    # n = e^x (e^x + 2): no cancellation, and exact at 0 (t = 3/5). Past x = 20,
    # t is 1 in float32 and the clamp only touches a term below 1e-13.
    e = ops.exp(ops.minimum(x, 20.0))
    n = e * (e + 2.0)
    m = n + 2.0
    return n / m + x * ops.sigmoid(x) * (4.0 * (n + 1.0) / (m * m))


_HALF_DTYPES = ("float16", "bfloat16")


def surrogate_grad(x, upstream, derivative, params):
    """`upstream * s'(x)`, the reference SUGAR backward; half precision in float32."""
    dtype = backend.standardize_dtype(x.dtype)
    if dtype in _HALF_DTYPES:
        slope = ops.cast(derivative(ops.cast(x, "float32"), **params), dtype)
    else:
        slope = derivative(x, **params)
    return ops.multiply(upstream, slope)


_REGISTRY: dict[str, Surrogate] = {}


def register_surrogate(name, derivative, value=None, defaults=None, overwrite=False):
    """Registers a surrogate under `name` for `sugar`, `SugarReLU` and `activation_layer`.

    Args:
        name: the surrogate's name; `activation_layer(f"sugar_{name}")` then works.
        derivative: `derivative(x, **params)` written with `keras.ops`.
        value: optional `value(x, **params)` (for plots and comparisons).
        defaults: the parameters and their default values.
        overwrite: replace an existing surrogate of that name.

    A model using a registered surrogate loads only in a process that has
    registered it too, like any custom Keras object.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Surrogate name must be an identifier, got {name!r}.")
    if not callable(derivative) or (value is not None and not callable(value)):
        raise TypeError("`derivative` (and `value`, if given) must be callable.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"Surrogate '{name}' is already registered; pass overwrite=True to replace it."
        )
    defaults = dict(defaults or {})
    spec = Surrogate(name, derivative, value, defaults)
    # Validate the defaults as if passed by a user; store them as floats.
    _REGISTRY[name] = dataclasses.replace(spec, defaults=spec.resolve(defaults))
    return _REGISTRY[name]


def get_surrogate(name):
    """The registered `Surrogate` called `name`; `ValueError` listing the names otherwise."""
    if isinstance(name, Surrogate):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown surrogate {name!r}. Valid surrogates: {', '.join(_REGISTRY)}."
        ) from None


class NameView(Sequence):
    """A read-only, live view of names (it follows later registrations)."""

    def __init__(self, names_fn):
        self._names_fn = names_fn

    def __getitem__(self, index):
        return tuple(self._names_fn())[index]

    def __len__(self):
        return len(tuple(self._names_fn()))

    def __repr__(self):
        return repr(tuple(self._names_fn()))

    def __eq__(self, other):
        return tuple(self) == tuple(other)


SURROGATES = NameView(lambda: _REGISTRY.keys())

register_surrogate("bsilu", _bsilu_grad, _bsilu, {"a": 1.67})
register_surrogate("nelu", _nelu_grad, _nelu, {"a": 0.05})
register_surrogate("elu", _elu_grad, lambda x, alpha: ops.elu(x, alpha), {"alpha": 1.0})
register_surrogate("selu", _selu_grad, ops.selu)
register_surrogate("gelu", _gelu_grad, lambda x: ops.gelu(x, approximate=False))
register_surrogate("silu", _silu_grad, ops.silu)
register_surrogate(
    "leaky_relu", _leaky_relu_grad, lambda x, alpha: ops.leaky_relu(x, alpha), {"alpha": 0.01}
)
register_surrogate("mish", _mish_grad, activations.mish)
