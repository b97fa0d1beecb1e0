"""SugarReLU against plain ReLU and forward-gradient injection, side by side.

    python benchmarks/bench_sugar.py [--backends tensorflow,jax,torch] [--rounds 40]

Speed: one process per backend holds the four models (same weights) and
interleaves them in blocks of a few steps, round after round in rotated order;
each variant keeps its fastest block. Interleaving in one process takes out
what differs between processes (memory layout, thread placement, the VM's
neighbours), and the fastest block takes out TensorFlow's random flips to a
~2x slower mode on small CPUs (see shared/DESIGN.md). `relu_again` is plain
ReLU timed a second time: its ratio is the noise floor.

Memory: the peak resident set while training, above what the process held
before the model was built (Linux VmHWM, reset first), one process per
variant since a peak cannot be shared.
"""

import argparse
import json
import os
import subprocess
import sys
import time

VARIANTS = ("relu", "relu_again", "sugar", "injection")  # relu_again: the noise floor
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES, FEATURES, CLASSES, WIDTH, DEPTH, BATCH = 16384, 784, 10, 512, 4, 256
STEPS = 8  # steps per timed block


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


def _model(variant):
    import keras

    import keras_relu

    activation = {
        "relu": lambda: keras.layers.Activation("relu"),
        "relu_again": lambda: keras.layers.Activation("relu"),
        "sugar": lambda: keras_relu.SugarReLU("bsilu"),
        "injection": lambda: _injection_layer(keras),
    }[variant]
    keras.utils.set_random_seed(0)  # the same weights for every variant
    model = keras.Sequential([keras.Input((FEATURES,))])
    for _ in range(DEPTH):
        model.add(keras.layers.Dense(WIDTH))
        model.add(activation())
    model.add(keras.layers.Dense(CLASSES))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data(samples):
    import numpy as np

    rng = np.random.default_rng(0)
    return (rng.standard_normal((samples, FEATURES)).astype("float32"),
            rng.integers(0, CLASSES, samples))


def speed_worker(rounds):
    """All variants in this process, interleaved; one JSON line: fastest ms per step."""
    x, y = _data(BATCH)
    models = {v: _model(v) for v in VARIANTS}
    steps = {
        "train_ms": lambda m: m.train_on_batch(x, y),
        "predict_ms": lambda m: m.predict_on_batch(x),
    }
    for model in models.values():  # compile and warm up
        for step in steps.values():
            for _ in range(3):
                step(model)
    best = {v: {key: float("inf") for key in steps} for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for variant in order if r % 2 == 0 else order[::-1]:
            for key, step in steps.items():
                start = time.perf_counter()
                for _ in range(STEPS):
                    step(models[variant])
                ms = 1e3 * (time.perf_counter() - start) / STEPS
                best[variant][key] = min(best[variant][key], ms)
    print(json.dumps(best))


def memory_worker(variant):
    """One variant in this process: one JSON line, peak MiB of training above the baseline."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter
    x, y = _data(SAMPLES)
    import keras  # noqa: F401  (imported before the baseline is read)

    base_kib = _status_kib("VmRSS")
    _model(variant).fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    print(json.dumps({"train_mib": (_status_kib("VmHWM") - base_kib) / 1024}))


def _run(backend, *args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds of timing")
    parser.add_argument("--memory-rounds", type=int, default=2)
    parser.add_argument("--speed-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed_worker:
        return speed_worker(args.rounds)
    if args.memory_worker:
        return memory_worker(args.memory_worker)
    print(f"MLP {DEPTH}x{WIDTH}, batch {BATCH}x{FEATURES}, adam, default compile; fastest "
          f"{STEPS}-step block of {args.rounds} interleaved rounds; memory: fastest-of-"
          f"{args.memory_rounds} peak RSS of a one-epoch fit on {SAMPLES} samples")
    print(f"{'backend':<11}{'variant':<11}{'train ms':>9}{'ratio':>7}{'infer ms':>9}{'ratio':>7}"
          f"{'train MiB':>10}{'ratio':>7}")
    for backend in args.backends.split(","):
        best = _run(backend, "--speed-worker", "--rounds", str(args.rounds))
        for r in range(args.memory_rounds):
            for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                mib = _run(backend, "--memory-worker", variant)["train_mib"]
                best[variant]["train_mib"] = min(mib, best[variant].get("train_mib", mib))
        ref = best["relu"]
        for variant in VARIANTS:
            b = best[variant]
            print(f"{backend:<11}{variant:<11}"
                  + "".join(f"{b[k]:>{w}.{p}f}{b[k] / ref[k]:>7.3f}" for k, w, p in
                            (("train_ms", 9, 2), ("predict_ms", 9, 2), ("train_mib", 10, 1))),
                  flush=True)


if __name__ == "__main__":
    main()
