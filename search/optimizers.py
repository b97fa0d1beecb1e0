"""A trial's optimizer from its config: Keras' own optimizers, learning-rate schedules and
clipping arguments, and `compile_model`, which the trial runner applies to every model."""

import keras

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


def compile_model(model, config, steps_per_epoch, epochs, loss=None, metrics=None):
    """Compile `model` with the trial's optimizer; a classifier's loss and accuracy unless
    `loss` / `metrics` say otherwise."""
    model.compile(optimizer=optimizer(config, steps_per_epoch, epochs),
                  loss=loss or "sparse_categorical_crossentropy",
                  metrics=["accuracy"] if metrics is None else metrics)
    return model
