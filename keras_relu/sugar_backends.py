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
uncompiled `surrogate_grad` and one warning says why.

Activations smaller than `COMPILE_FROM` entries keep the uncompiled gradient:
there compiling buys no speed, and not compiling spares the compiler's runtime
(XLA's on TensorFlow: 79 MiB in the CNN's first epoch, once per process). Measured in
training steps on a 2-core CPU (2026-11-30, `benchmarks/bench_sugar.py
--variants relu,relu_again,bsilu_compiled,bsilu_uncompiled,relu_custom`): on
the MLP 4x512, batch 256 (131k entries per activation), both paths within the
noise of a custom gradient that returns ReLU's own (TensorFlow, three runs:
compiled 1.03-1.07x ReLU, uncompiled 1.03-1.09x, that custom gradient
1.05-1.08x; torch 1.06x and 1.06x); on the CNN (4.2M entries) compiled 1.06x
against 1.21x on TensorFlow, 1.03x against 1.18x on torch. A TensorFlow graph
traced with an unknown batch size decides per step (`tf.cond` on the size).

`PATHS` counts the backward passes built on each path: `"compiled"`,
`"fallback"` (compiling failed) or `"small"` (below `COMPILE_FROM`).
"""

import collections
import types
import warnings

from keras import backend

from keras_relu.surrogates import surrogate_grad

PATHS = collections.Counter()
COMPILE_FROM = {"tensorflow": 1 << 20, "torch": 1 << 20}  # activation entries
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
    """`surrogate_grad`, compiled into one pass where the backend can compile it and
    the activation is large enough for that to pay."""
    name = backend.backend()
    if name not in COMPILERS or _inside_compiler():
        return surrogate_grad(x, upstream, derivative, params)
    size = _static_size(x)
    if size is not None and size < COMPILE_FROM[name]:
        PATHS["small"] += 1
        return surrogate_grad(x, upstream, derivative, params)
    fn = _compiled(derivative, params, x)
    PATHS["fallback" if fn is None else "compiled"] += 1
    if fn is None:
        return surrogate_grad(x, upstream, derivative, params)
    if size is None:  # a TensorFlow graph whose batch size is not known yet
        import tensorflow as tf

        return tf.cond(tf.size(x) >= COMPILE_FROM[name], lambda: fn(x, upstream),
                       lambda: surrogate_grad(x, upstream, derivative, params))
    return fn(x, upstream)


def _static_size(x):
    """The number of entries of `x`, or None while a graph leaves a dimension open."""
    if backend.backend() == "torch":
        return x.numel()
    return x.shape.num_elements()


def _inside_compiler():
    """True while torch.compile traces the caller: it fuses the reference itself."""
    if backend.backend() != "torch":
        return False
    import torch

    return torch.compiler.is_compiling()
