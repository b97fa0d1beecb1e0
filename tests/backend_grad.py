"""Gradients of a scalar function through the active Keras backend's autodiff."""

import keras
from keras import ops


def grad(fn, x, dtype=None):
    """d fn(x).sum() / dx as a NumPy array (float32 for half dtypes).

    `x` is a NumPy array; with `dtype` it is cast to that dtype first. It goes to the
    backend's default device, so on a GPU machine the gradient is computed there.
    """
    backend = keras.backend.backend()
    dtype = dtype or str(x.dtype)
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.cast(tf.constant(x), dtype)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            total = tf.reduce_sum(fn(xt))
        g = tape.gradient(total, xt)
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        g = jax.grad(lambda v: jnp.sum(fn(v)))(jnp.asarray(x).astype(dtype))
    elif backend == "torch":
        import torch

        # on Keras' device (a GPU where there is one), as the layers' own tensors
        xt = ops.convert_to_tensor(x).to(getattr(torch, dtype)).detach().requires_grad_(True)
        fn(xt).sum().backward()
        g = xt.grad
    else:
        raise NotImplementedError(backend)
    if dtype in ("float16", "bfloat16"):
        g = ops.cast(g, "float32")
    return ops.convert_to_numpy(g)
