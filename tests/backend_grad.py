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


def weight_grads(model, x, weights):
    """d sum(model(x) * weights) / d v for each trainable variable v, as NumPy arrays
    (inference mode: batch normalisation uses its moving statistics); `weights` has one
    array per model output."""
    from keras import tree

    def weighted(outputs):
        return sum(ops.sum(o * ops.convert_to_tensor(w)) for o, w in zip(tree.flatten(outputs),
                                                                         weights))

    backend = keras.backend.backend()
    variables = model.trainable_variables
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            total = weighted(model(x, training=False))
        grads = tape.gradient(total, [v.value for v in variables])
    elif backend == "jax":
        import jax
        fixed = [v.value for v in model.non_trainable_variables]

        def total(trainable):
            out, _ = model.stateless_call(trainable, fixed, x, training=False)
            return weighted(out)

        grads = jax.jit(jax.grad(total))([v.value for v in variables])
    elif backend == "torch":
        import torch

        for v in variables:
            v.value.grad = None
        weighted(model(torch.tensor(x), training=False)).backward()
        grads = [v.value.grad for v in variables]
    else:
        raise NotImplementedError(backend)
    return [ops.convert_to_numpy(g) for g in grads]
