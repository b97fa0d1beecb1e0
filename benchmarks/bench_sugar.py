"""SugarReLU against plain ReLU and forward-gradient injection, side by side.

    python benchmarks/bench_sugar.py [--backends tensorflow,jax,torch] [--rounds 3]

Each measurement runs in its own process, the variants alternate round by
round, and each side keeps its fastest epoch and fastest predict; `relu_again`
is plain ReLU measured a second time, so its ratio is the noise floor (TensorFlow on
small CPUs flips at random between a fast and a ~2x slower mode, see
shared/DESIGN.md). Memory is the process's peak resident set during training
above what it held before the model was built (Linux VmHWM, reset first).
"""

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = ("relu", "relu_again", "sugar", "injection")  # relu_again: the noise floor
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES, FEATURES, CLASSES, WIDTH, DEPTH, BATCH, EPOCHS = 16384, 784, 10, 512, 4, 256, 4


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


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


def worker(variant):
    """One process: build, train, predict; print one JSON line of figures."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter
    import keras
    import numpy as np

    import keras_relu

    rng = np.random.default_rng(0)
    x = rng.standard_normal((SAMPLES, FEATURES)).astype("float32")
    y = rng.integers(0, CLASSES, SAMPLES)
    base_kib = _status_kib("VmRSS")
    activation = {
        "relu": lambda: keras.layers.Activation("relu"),
        "relu_again": lambda: keras.layers.Activation("relu"),
        "sugar": lambda: keras_relu.SugarReLU("bsilu"),
        "injection": lambda: _injection_layer(keras),
    }[variant]
    model = keras.Sequential([keras.Input((FEATURES,))])
    for _ in range(DEPTH):
        model.add(keras.layers.Dense(WIDTH))
        model.add(activation())
    model.add(keras.layers.Dense(CLASSES))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    epoch_times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[Timer()])
    peak_kib = _status_kib("VmHWM")
    predict_times = []
    for _ in range(4):
        start = time.perf_counter()
        model.predict(x, batch_size=BATCH, verbose=0)
        predict_times.append(time.perf_counter() - start)
    steps = SAMPLES // BATCH
    print(json.dumps({
        "train_ms": 1e3 * min(epoch_times[1:]) / steps,  # epoch 0 includes tracing
        "predict_ms": 1e3 * min(predict_times[1:]) / steps,
        "train_mib": (peak_kib - base_kib) / 1024,
    }))


def run(backend, variant):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, __file__, "--worker", variant], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    print(f"MLP {DEPTH}x{WIDTH} on {SAMPLES}x{FEATURES}, batch {BATCH}, adam, default compile;"
          f" best of {args.rounds} alternated rounds")
    print(f"{'backend':<11}{'variant':<10}{'train ms':>9}{'ratio':>7}{'infer ms':>9}{'ratio':>7}"
          f"{'train MiB':>10}{'ratio':>7}")
    for backend in args.backends.split(","):
        best = {v: {} for v in VARIANTS}
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                for key, value in run(backend, variant).items():
                    best[variant][key] = min(value, best[variant].get(key, float("inf")))
        ref = best["relu"]
        for variant in VARIANTS:
            b = best[variant]
            print(f"{backend:<11}{variant:<10}"
                  f"{b['train_ms']:>9.2f}{b['train_ms'] / ref['train_ms']:>7.3f}"
                  f"{b['predict_ms']:>9.2f}{b['predict_ms'] / ref['predict_ms']:>7.3f}"
                  f"{b['train_mib']:>10.1f}{b['train_mib'] / ref['train_mib']:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
