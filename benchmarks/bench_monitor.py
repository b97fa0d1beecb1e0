"""Overhead of DeadNeuronMonitor, side by side. Prints a small table.

    KERAS_BACKEND=jax python benchmarks/bench_monitor.py [--reps 3] [--samples 50000]
        [--cases a,b,c] [--figures]

(a) one monitor check vs a plain `model.predict` over the same probe set
    (2048 samples, small CNN); target <= 1.2x.
(b) one epoch with vs without the monitor, small CNN on a synthetic CIFAR-sized
    set (32x32x3, 10 classes); target <= 3%.
(c) the same on digits (a deep narrow ReLU MLP); reported.

The variants alternate and the fastest repetition of each is compared: on
2-core CPUs TensorFlow flips at random between a fast and a 2x slower mode.
Epoch times are taken from `on_epoch_begin` to after the monitor's
`on_epoch_end`, so they include the check but not the one before training.
The models and data live on the backend's default device (a GPU where there is
one); the table says which. `--figures` also prints each row as `FIGURE {json}`.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_relu  # noqa: E402
from keras_relu import neurons  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def small_cnn():
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inp)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(h)
    h = keras.layers.Dense(32, activation="relu")(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inp, keras.layers.Dense(10)(h))


def digits_mlp():
    inp = keras.Input((64,))
    h = inp
    for _ in range(6):
        h = keras.layers.Activation("relu")(keras.layers.Dense(16)(h))
    return keras.Model(inp, keras.layers.Dense(10)(h))


def compile_model(model, lr=1e-3):
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def bench_check(model, probe, reps, batch_size=256):
    """(a): fastest monitor check vs fastest model.predict on `probe`."""
    monitor = keras_relu.DeadNeuronMonitor(probe=probe, batch_size=batch_size)
    monitor.set_model(model)
    monitor.on_train_begin()  # builds and compiles the probe
    model.predict(probe, batch_size=batch_size, verbose=0)  # compiles predict
    check, plain = [], []
    for _ in range(reps):
        start = time.perf_counter()
        monitor._measure()
        check.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.predict(probe, batch_size=batch_size, verbose=0)
        plain.append(time.perf_counter() - start)
    return min(check), min(plain)


def fastest_epochs(model, x, y, callback, reps, batch_size, epochs=2):
    """(fastest epoch with `callback`, fastest without), fits alternating."""
    with_, without = [], []
    model.fit(x[:batch_size * 4], y[:batch_size * 4], batch_size=batch_size, verbose=0)
    for _ in range(reps):
        for times, callbacks in ((without, []), (with_, [callback])):
            timer = EpochTimer()
            model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
                      callbacks=[*callbacks, timer])
            times.extend(timer.times)
    return min(with_), min(without)


def bench_data(samples):
    """(x, y, probe) of random 32x32x3 images, and digits (dx, dy) scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((samples, 32, 32, 3), dtype="float32")
    y = rng.integers(0, 10, samples)
    dx, dy = load_digits(return_X_y=True)
    return x, y, neurons.draw_probe(x, 2048, seed=0), (dx / 16.0).astype("float32"), dy


def measure(cases, reps, samples):
    """[(case, monitor s, plain s, target)] of the chosen cases ("a", "b", "c")."""
    x, y, probe, dx, dy = bench_data(samples)
    rows = []
    cnn = compile_model(small_cnn())
    if "a" in cases or "b" in cases:
        check, plain = bench_check(cnn, probe, reps * 3)
        rows.append((f"(a) check vs predict, {len(probe)} probe, CNN", check, plain, "<= 1.20x"))
    if "b" in cases:
        with_, without = fastest_epochs(cnn, x, y, keras_relu.DeadNeuronMonitor(probe=probe),
                                        reps, batch_size=128)
        rows.append((f"(b) epoch, {samples} x 32x32x3, CNN", with_, without, "<= 1.03x"))
        rows.append(("(b') plain epoch + one check (a)", without + check, without, "<= 1.03x"))
    if "c" in cases:
        mlp = compile_model(digits_mlp(), lr=0.01)
        with_, without = fastest_epochs(mlp, dx, dy, keras_relu.DeadNeuronMonitor(probe=dx),
                                        reps, batch_size=64)
        rows.append(("(c) epoch, digits 1797 x 64, MLP", with_, without, "reported"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--cases", default="a,b,c", help="of a, b, c (default all)")
    parser.add_argument("--figures", action="store_true", help="each row also as FIGURE {json}")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    if not cases <= {"a", "b", "c"} or args.reps < 1 or args.samples < 1:
        parser.exit(2, "bench_monitor.py: --cases takes a, b, c; --reps and --samples >= 1\n")
    rows = measure(cases, args.reps, args.samples)
    device = str(keras.ops.ones(1).device) if keras.backend.backend() == "torch" else \
        ",".join(str(d) for d in keras.distribution.list_devices()[:1])
    print(f"\nbackend: {keras.backend.backend()}, device {device}   (fastest of the "
          "repetitions, seconds)")
    print(f"{'case':44} {'monitor':>9} {'plain':>9} {'ratio':>7}  target")
    for name, a, b, target in rows:
        print(f"{name:44} {a:9.4f} {b:9.4f} {a / b:6.3f}x  {target}")
        if args.figures:
            print("FIGURE " + json.dumps({"backend": keras.backend.backend(), "device": device,
                                          "case": name, "monitor_s": round(a, 5),
                                          "plain_s": round(b, 5), "ratio": round(a / b, 4),
                                          "target": target}), flush=True)


if __name__ == "__main__":
    main()
