"""The loss curve of a small SugarReLU MLP on scikit-learn's digits, as JSON.

    KERAS_BACKEND=torch python benchmarks/sugar_digits_curve.py

A fixed seed, float32 and a fixed batch order: the curve is a fingerprint of
the SUGAR op's forward and backward passes (one layer each of B-SiLU, NeLU
and GELU), so a faster backward pass must leave it unchanged to ~1e-5 (or, where the
curve forks, move it no more than an ulp's nudge of the reference does).
`tests/test_sugar_fast.py` compares it with the curve of the reference
implementation, stored in `tests/data/sugar_digits_curve.json`.
"""

import json

EPOCHS, BATCH = 8, 64


def loss_curve(epochs=EPOCHS):
    """Per-epoch training loss (a list of floats) on the active backend."""
    import keras
    from sklearn.datasets import load_digits

    import keras_relu

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,))])
    for surrogate in ("bsilu", "nelu", "gelu"):
        model.add(keras.layers.Dense(64))
        model.add(keras_relu.SugarReLU(surrogate))
    model.add(keras.layers.Dense(10))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0)
    return [float(v) for v in history.history["loss"]]


if __name__ == "__main__":
    import keras

    print(json.dumps({keras.backend.backend(): loss_curve()}))
