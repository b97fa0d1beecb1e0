"""The models and variants that bench_sugar.py and bench_sugar_callgrind.py time.

Variants: `relu` is `Activation("relu")`; `sugar` is `SugarReLU("bsilu")`,
`sugar_<name>` is `SugarReLU(name)`; `injection` is forward-gradient injection
(`s(x) - stop_gradient(s(x)) + stop_gradient(relu(x))`) with B-SiLU.
`bsilu_compiled` and `bsilu_uncompiled` are `sugar` with its backward pass held
on one path whatever the activation's size (`sugar_backends.COMPILE_FROM`);
`relu_custom` is ReLU through a custom gradient that keeps the input, as SUGAR
does, but returns ReLU's gradient: what the mechanism costs without a surrogate.
`xla_<variant>` is that variant compiled with `jit_compile=True` (XLA for the whole
training step; TensorFlow's default on a CPU is no XLA, JAX's is XLA anyway).
"""

import os

VARIANTS = ("relu", "relu_again", "sugar", "injection")  # the MLP set bench_sugar_callgrind uses
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES, FEATURES, CLASSES, WIDTH, DEPTH, BATCH = 16384, 784, 10, 512, 4, 256
CNN_SHAPE, CNN_FILTERS, CNN_BATCH, CNN_SAMPLES = (32, 32, 3), (32, 32, 64), 128, 2048
# A CNN of the size a GPU is for: 64x64 maps, up to 128 channels (134M entries an activation)
LARGE_SHAPE, LARGE_FILTERS, LARGE_BATCH, LARGE_SAMPLES = (64, 64, 3), (64, 64, 128, 128), 256, 2048
if os.environ.get("BENCH_SUGAR_SIZE") == "tiny":  # gpu_check.py --cpu-smoke: wiring, not figures
    SAMPLES, FEATURES, WIDTH, BATCH = 256, 64, 32, 32
    CNN_SHAPE, CNN_FILTERS, CNN_BATCH, CNN_SAMPLES = (8, 8, 3), (4, 4, 8), 8, 64
    LARGE_SHAPE, LARGE_FILTERS, LARGE_BATCH, LARGE_SAMPLES = (8, 8, 3), (4, 4, 8, 8), 8, 64
# Each CNN by name: input shape, conv filters (3x3, same), batch, samples of an epoch
CNNS = {"cnn": (CNN_SHAPE, CNN_FILTERS, CNN_BATCH, CNN_SAMPLES),
        "cnn_large": (LARGE_SHAPE, LARGE_FILTERS, LARGE_BATCH, LARGE_SAMPLES)}
MODELS = ("mlp", *CNNS)


def batch_size(arch):
    return BATCH if arch == "mlp" else CNNS[arch][2]


def epoch_samples(arch):
    return SAMPLES if arch == "mlp" else CNNS[arch][3]


def describe(arch):
    """`MLP 4x512 batch 256`, `cnn_large conv 64-64-128-128 3x3 on 64x64x3 batch 256`."""
    if arch == "mlp":
        return f"MLP {DEPTH}x{WIDTH} batch {BATCH}"
    shape, filters, batch, _ = CNNS[arch]
    return (f"{arch} conv {'-'.join(map(str, filters))} 3x3 on {'x'.join(map(str, shape))} "
            f"batch {batch}")


def _injection_layer(keras):
    """y = s(x) - stop_gradient(s(x)) + stop_gradient(relu(x)): the trick other SUGAR code uses."""
    from keras import ops

    from keras_relu import get_surrogate

    spec = get_surrogate("bsilu")

    class Injection(keras.layers.Layer):
        def call(self, x):
            s = spec.value(x, **spec.defaults)
            return s - ops.stop_gradient(s) + ops.stop_gradient(ops.relu(x))

    return Injection()


def _relu_custom_layer(keras):
    """relu(x) whose gradient, `upstream` where x > 0, comes from an `ops.custom_gradient`."""
    from keras import ops

    @ops.custom_gradient
    def relu(x):
        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            return ops.where(x > 0, upstream, ops.zeros_like(upstream))

        return ops.relu(x), grad

    class ReluCustom(keras.layers.Layer):
        def call(self, x):
            return relu(x)

    return ReluCustom()


# Backward path held for a variant: COMPILE_FROM, in activation entries
FORCED_FROM = {"bsilu_compiled": 0, "bsilu_uncompiled": 1 << 62}
NAMED_VARIANTS = ("relu", "relu_again", "sugar", "injection", "relu_custom", *FORCED_FROM)


def base_variant(variant):
    """`variant` without its `xla_` prefix."""
    return variant[len("xla_"):] if variant.startswith("xla_") else variant


def unknown_variants(variants):
    """The names in `variants` that are neither named variants nor `sugar_<surrogate>`
    (either with an `xla_` prefix)."""
    return [v for v in variants if base_variant(v) not in NAMED_VARIANTS
            and not base_variant(v).startswith("sugar_")]


def hold_path(variant, default_from):
    """Sets the active backend's COMPILE_FROM for `variant` (its default for the others)."""
    import keras

    from keras_relu import sugar_backends

    backend = keras.backend.backend()
    if backend in default_from:
        sugar_backends.COMPILE_FROM[backend] = FORCED_FROM.get(base_variant(variant),
                                                               default_from[backend])


def activation(variant):
    import keras

    import keras_relu

    variant = base_variant(variant)
    if variant in ("relu", "relu_again"):
        return keras.layers.Activation("relu")
    if variant == "injection":
        return _injection_layer(keras)
    if variant == "relu_custom":
        return _relu_custom_layer(keras)
    if variant == "sugar" or variant in FORCED_FROM:
        return keras_relu.SugarReLU("bsilu")
    if variant.startswith("sugar_"):
        return keras_relu.SugarReLU(variant[len("sugar_"):])
    raise ValueError(f"Unknown variant {variant!r}.")


def build_model(variant, arch="mlp"):
    """The MLP (4 x 512 dense) or a CNN of `CNNS` (3x3 convs, same), Adam, default compile
    (`jit_compile=True` for an `xla_` variant)."""
    import keras

    keras.utils.set_random_seed(0)  # the same weights for every variant
    if arch == "mlp":
        model = keras.Sequential([keras.Input((FEATURES,))])
        for _ in range(DEPTH):
            model.add(keras.layers.Dense(WIDTH))
            model.add(activation(variant))
    else:
        shape, all_filters, _, _ = CNNS[arch]
        model = keras.Sequential([keras.Input(shape)])
        for filters in all_filters:
            model.add(keras.layers.Conv2D(filters, 3, padding="same"))
            model.add(activation(variant))
        model.add(keras.layers.GlobalAveragePooling2D())
    model.add(keras.layers.Dense(CLASSES))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  **({"jit_compile": True} if variant.startswith("xla_") else {}))
    return model


def make_data(samples, arch="mlp"):
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (FEATURES,) if arch == "mlp" else CNNS[arch][0]
    return (rng.standard_normal((samples, *shape)).astype("float32"),
            rng.integers(0, CLASSES, samples))
