"""Streaming per-unit reductions of a probe model's outputs, one runner per backend.

Each runner folds a probe set, batch by batch, into (max, sum |h|, zero count)
per unit, on the device: TensorFlow in a `tf.function`, JAX in one jitted
`lax.scan`, torch under `no_grad` on a folded view (see `_fold`). The portable
`keras.ops` version (`run_portable`) is the reference the tests compare them with.
"""

import functools
import math

from keras import ops, tree


def _reduce(h, axis, acc):
    """Folds one batch of activations `h` into (max, sum |h|, zero count) per unit."""
    h = ops.cast(h, "float32")
    axes = tuple(i for i in range(len(h.shape)) if i != axis % len(h.shape))
    hmax, hsum = ops.max(h, axis=axes), ops.sum(ops.abs(h), axis=axes)
    per_unit = [h.shape[i] for i in axes]
    # A float32 count is exact below 2**24 and far cheaper on XLA:CPU, which
    # rewrites an int32 sum into a slow reduce-window.
    exact_in_float = None not in per_unit and math.prod(per_unit) < 2**24
    count_dtype = "float32" if exact_in_float else "int32"
    zeros = ops.cast(ops.sum(ops.cast(ops.equal(h, 0.0), count_dtype), axis=axes), "int32")
    return (ops.maximum(acc[0], hmax), acc[1] + hsum, acc[2] + zeros)


def _batches(xs, batch_size):
    n = int(tree.flatten(xs)[0].shape[0])
    for start in range(0, n, batch_size):
        yield tree.map_structure(lambda a: a[start:start + batch_size], xs)


# Each `run(acc, xs, batch_size)` folds all of `xs`, batch by batch, into `acc`.
def run_portable(probe, axes, compile_step=lambda step: step):
    def step(acc, x):
        outs = tree.flatten(probe(x, training=False))
        return [_reduce(h, ax, a) for h, ax, a in zip(outs, axes, acc)]

    step = compile_step(step)

    def run(acc, xs, batch_size):
        for batch in _batches(xs, batch_size):
            acc = step(acc, batch)
        return acc
    return run


def _run_tensorflow(probe, axes):
    import tensorflow as tf

    def compile_step(step):
        step = tf.function(step, reduce_retracing=True)
        # Every probe (one per model, e.g. per search trial) traces its own step; TF's
        # "frequent retracing" warning, keyed on the code object, would flag that.
        step._omit_frequent_tracing_warning = True
        return step
    return run_portable(probe, axes, compile_step)


# XLA:CPU hands a convolution whose output the probe also returns to YNNPACK on its
# own, and there it ran 2-4x slower than XLA's own convolution (jax 0.10, x86-64);
# inside `predict` the same convolution is fused with its consumers and is fast.
# The probe's scan therefore leaves YNNPACK only dots and reductions.
_JAX_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                    "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


def _run_jax(probe, axes):
    import jax

    def scan(trainable, non_trainable, acc, xs, batch_size):
        def body(acc, x):
            outs, _ = probe.stateless_call(trainable, non_trainable, x, training=False)
            return [_reduce(h, ax, a) for h, ax, a in zip(tree.flatten(outs), axes, acc)], None
        # Inside jit the reshape into (batches, batch, ...) is free, not a copy.
        stacked = tree.map_structure(
            lambda a: a.reshape((-1, batch_size, *a.shape[1:])), xs)
        return jax.lax.scan(body, acc, stacked)[0]

    options = _JAX_CPU_OPTIONS if jax.default_backend() == "cpu" else {}
    jitted = jax.jit(scan, static_argnames="batch_size", compiler_options=options)

    def call(*args, batch_size):
        nonlocal jitted
        try:
            return jitted(*args, batch_size=batch_size)
        except Exception as error:  # an XLA that no longer knows the option
            if not any(key in str(error) for key in _JAX_CPU_OPTIONS):
                raise
            jitted = jax.jit(scan, static_argnames="batch_size")
            return jitted(*args, batch_size=batch_size)

    def run(acc, xs, batch_size):
        state = ([v.value for v in probe.trainable_variables],
                 [v.value for v in probe.non_trainable_variables])
        n = int(tree.flatten(xs)[0].shape[0])
        full = n - n % batch_size
        if full:
            whole = xs if full == n else tree.map_structure(lambda a: a[:full], xs)
            acc = call(*state, acc, whole, batch_size=batch_size)
        if full < n:
            acc = call(*state, acc, tree.map_structure(lambda a: a[full:], xs),
                       batch_size=n - full)
        return acc
    return run


def _run_torch(probe, axes):
    import torch

    def reduce(h, axis, acc):  # single-pass reductions, no temporaries but |h|
        units = h.shape[axis]
        h = torch.movedim(h.float(), axis, -1).reshape(-1, units)
        k = _fold(h.shape[0], units)
        wide = h.reshape(-1, k * units)  # a view: rows folded into columns
        hmax = wide.amax(0).view(k, units).amax(0)
        magnitude = wide.abs()
        hsum = magnitude.sum(0).view(k, units).sum(0)
        if wide.shape[0] < 2**24:  # float32 counts are exact below 2**24
            # sign(|h|) is 1 or 0: a float sum, 5x faster than count_nonzero(dim=).
            nonzero = magnitude.sign_().sum(0).nan_to_num(wide.shape[0])
        else:
            nonzero = torch.count_nonzero(wide, dim=0)
        zeros = h.shape[0] - nonzero.view(k, units).sum(0).int()
        return torch.maximum(acc[0], hmax), acc[1] + hsum, acc[2] + zeros

    def run(acc, xs, batch_size):
        with torch.no_grad():
            for batch in _batches(xs, batch_size):
                outs = tree.flatten(probe(batch, training=False))
                acc = [reduce(h, ax, a) for h, ax, a in zip(outs, axes, acc)]
        return acc
    return run


@functools.lru_cache(maxsize=256)
def _fold(rows, units, width=1024):
    """The largest k dividing `rows` with k * units <= width. torch reduces a narrow
    (rows, units) tensor over its rows up to 40x slower than the same data viewed as
    (rows / k, k * units); a conv's 16 channels are that narrow."""
    return max(k for k in range(1, max(1, width // units) + 1) if rows % k == 0)


_RUNS = {"tensorflow": _run_tensorflow, "jax": _run_jax, "torch": _run_torch}


def runner(probe, axes, backend):
    """The `run(acc, xs, batch_size)` of `backend` for `probe`'s outputs reduced over all
    axes but `axes`; the portable `keras.ops` version for a backend without a fast one."""
    return _RUNS.get(backend, run_portable)(probe, axes)
