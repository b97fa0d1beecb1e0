"""Fused SUGAR backward passes: `upstream * s'(x)` compiled into one pass.

Run op by op, the surrogate's gradient reads and writes the whole activation
once per element-wise op (B-SiLU: about 7 passes; ReLU's backward: 1). On
convolutional nets that memory traffic is the cost, so TensorFlow compiles the
gradient with XLA (`tf.function(jit_compile=True)`) and torch with Inductor
(`torch.compile`); JAX needs nothing, as XLA already fuses the whole step.

The function compiled is `surrogate_grad`, the reference, for any surrogate
(user-registered ones too), once per surrogate, parameters, dtype, rank and device.
Before first use it is run on a tiny input; if compiling fails (no C++
compiler for Inductor, an untraceable user surrogate, ...) that key keeps the
uncompiled `surrogate_grad` and one warning says why. `PATHS` counts the
backward passes built on each path: `"compiled"` or `"fallback"`.
"""

import collections
import types
import warnings

from keras import backend

from keras_relu.surrogates import surrogate_grad

PATHS = collections.Counter()
_CACHE = {}  # key -> compiled function, or None once compiling has failed


def _own_copy(fn, name):
    """`fn` with a code object of its own, named `name`: torch caches compiled
    graphs per code object (at most 8) and TensorFlow counts retracing per code
    object (compared by value), so each key gets its own."""
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


def _compile_torch(fn, like):
    import torch

    compiled = torch.compile(fn, dynamic=True, fullgraph=True)
    probe = like.new_zeros((2,) * like.ndim)  # same dtype and device
    compiled(probe, probe)  # compiles now, so a failure surfaces here
    return compiled


def _compile_tensorflow(fn, like):
    import tensorflow as tf

    spec = tf.TensorSpec([None] * len(like.shape), like.dtype)  # XLA compiles per shape
    compiled = tf.function(fn, jit_compile=True, input_signature=[spec, spec])
    with tf.init_scope():  # run eagerly, even while a graph is being traced
        probe = tf.zeros((2,) * len(like.shape), dtype=like.dtype)
        compiled(probe, probe).numpy()
    return compiled


COMPILERS = {"torch": _compile_torch, "tensorflow": _compile_tensorflow}


def _compiled(derivative, params, x):
    """The compiled gradient for `x`'s surrogate, parameters, dtype, rank and device,
    or None when compiling it failed."""
    dtype = backend.standardize_dtype(x.dtype)
    key = (backend.backend(), derivative, tuple(sorted(params.items())), dtype,
           len(x.shape), str(getattr(x, "device", "")))
    if key not in _CACHE:

        def grad(x, upstream):
            return surrogate_grad(x, upstream, derivative, params)

        grad = _own_copy(grad, f"sugar_grad_{len(_CACHE)}")
        try:
            _CACHE[key] = COMPILERS[key[0]](grad, x)
        except Exception as err:  # any compiler failure: keep the reference
            _CACHE[key] = None
            name = getattr(derivative, "__name__", repr(derivative))
            warnings.warn(f"SUGAR: compiling the surrogate gradient {name} ({dtype}) "
                          f"failed, so its backward pass runs uncompiled: "
                          f"{type(err).__name__}: {err}", RuntimeWarning, stacklevel=2)
    return _CACHE[key]


def fused_grad(x, upstream, derivative, params):
    """`surrogate_grad`, compiled into one pass where the backend can compile it."""
    if _inside_compiler():
        return surrogate_grad(x, upstream, derivative, params)
    fn = None
    if backend.backend() in COMPILERS:
        fn = _compiled(derivative, params, x)
    PATHS["fallback" if fn is None else "compiled"] += 1
    if fn is None:
        return surrogate_grad(x, upstream, derivative, params)
    return fn(x, upstream)


def _inside_compiler():
    """True while torch.compile traces the caller: it fuses the reference itself."""
    if backend.backend() != "torch":
        return False
    import torch

    return torch.compiler.is_compiling()
