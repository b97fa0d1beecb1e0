"""Config -> compiled Keras model: an MLP for vectors, a small CNN for images.

Keras' own initializers, learning-rate schedules and optimizer clipping arguments;
activations from `keras_relu.activation_layer`. Activation layers are named
`activation_<i>` so per-layer metric keys are the same in every trial.
"""

import keras
from keras import layers

import keras_relu

INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform",
                "lecun_normal", "orthogonal")
CLIPPINGS = ("none", "clipnorm", "clipvalue", "global_clipnorm")
SCHEDULES = ("constant", "cosine", "cosine_warmup", "exponential", "piecewise")
OPTIMIZERS = ("adam", "adamw", "sgd")


def learning_rate(config, steps_per_epoch, epochs):
    """The learning rate or Keras schedule named by `config["schedule"]`."""
    rate, schedule = config["learning_rate"], config.get("schedule", "constant")
    total = max(1, steps_per_epoch * epochs)
    schedules = keras.optimizers.schedules
    if schedule == "constant":
        return rate
    if schedule == "cosine":
        return schedules.CosineDecay(rate, decay_steps=total)
    if schedule == "cosine_warmup":
        warmup = max(1, round(config["warmup_fraction"] * total))
        return schedules.CosineDecay(
            0.0, decay_steps=max(1, total - warmup), warmup_target=rate, warmup_steps=warmup
        )
    if schedule == "exponential":
        return schedules.ExponentialDecay(rate, steps_per_epoch, config["decay_rate"])
    if schedule == "piecewise":
        first = max(1, total // 2)
        boundaries = [first, max(first + 1, total * 3 // 4)]
        return schedules.PiecewiseConstantDecay(boundaries, [rate, rate / 10, rate / 100])
    raise ValueError(f"Unknown schedule {schedule!r}. Valid schedules: {', '.join(SCHEDULES)}.")


def optimizer(config, steps_per_epoch, epochs):
    """The optimizer named by `config["optimizer"]`, with its clipping argument if any."""
    kwargs = {"learning_rate": learning_rate(config, steps_per_epoch, epochs)}
    clipping = config.get("clipping", "none")
    if clipping != "none":
        if clipping not in CLIPPINGS:
            raise ValueError(f"Unknown clipping {clipping!r}. Valid: {', '.join(CLIPPINGS)}.")
        kwargs[clipping] = config["clip_threshold"]
    name = config.get("optimizer", "adam")
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    if name == "adamw":
        return keras.optimizers.AdamW(**kwargs)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=config.get("momentum", 0.9), **kwargs)
    raise ValueError(f"Unknown optimizer {name!r}. Valid optimizers: {', '.join(OPTIMIZERS)}.")


def _block(x, i, config, make_layer):
    batch_norm = config.get("batch_norm", False)
    x = make_layer(use_bias=not batch_norm, kernel_initializer=config.get("initializer", "he_normal"))(x)
    if batch_norm:
        x = layers.BatchNormalization()(x)
    return keras_relu.activation_layer(config["activation"], name=f"activation_{i}")(x)


def build_model(config, input_shape, num_classes, steps_per_epoch, epochs):
    """A compiled classifier for `config`: MLP if `input_shape` is a vector, else a CNN."""
    width, depth, dropout = config["width"], config["depth"], config.get("dropout", 0.0)
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    if len(input_shape) == 1:
        for i in range(depth):
            x = _block(x, i, config, lambda **kw: layers.Dense(width, **kw))
            if dropout:
                x = layers.Dropout(dropout)(x)
    else:
        for i in range(depth):
            x = _block(x, i, config, lambda **kw: layers.Conv2D(width, 3, padding="same", **kw))
            if min(x.shape[1:3]) >= 2:
                x = layers.MaxPooling2D()(x)
        x = layers.GlobalAveragePooling2D()(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    # float32 output keeps the softmax stable under a mixed-precision policy.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=optimizer(config, steps_per_epoch, epochs),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
