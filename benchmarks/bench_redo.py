"""Cost of ReDo, side by side. Prints a small table.

    KERAS_BACKEND=jax python benchmarks/bench_redo.py [--reps 5] [--samples 10000] [--cases a,b,c]

(a) one ReDo recycle step against one DeadNeuronMonitor check on the same probe
    (2048 samples, the small CNN of bench_monitor.py, Adam); target <= 1.3x.
    Before every recycle, outside the timing, 2 of 16, 4 of 32 and 4 of 32 units
    of the three hidden layers are forced dead (bias -100), so each recycle
    re-initialises 10 units, cuts their outgoing weights and resets their Adam
    slots. A second monitor check (`check_again`) is the noise floor.
(b) one epoch with ReDo recycling every epoch against one without, small CNN on
    a synthetic CIFAR-sized set (32x32x3, 10 classes); reported.
(c) the same on digits (a deep narrow ReLU MLP); reported.

The variants alternate and the fastest repetition of each is compared: on
2-core CPUs TensorFlow flips at random between a fast and a 2x slower mode.
Epoch times run from `on_epoch_begin` to after ReDo's `on_epoch_end`, so they
include the recycle.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
from bench_monitor import (  # noqa: E402
    bench_data, compile_model, digits_mlp, fastest_epochs, small_cnn)

import keras_relu  # noqa: E402
from keras_relu import neurons  # noqa: E402

DEAD = {16: [0, 1], 32: [0, 1, 2, 3]}  # units forced dead, by layer width


def _force_dead(model):
    for layer in model.layers[1:-1]:
        if layer.get_weights():
            kernel, bias = layer.get_weights()
            bias[DEAD[len(bias)]] = -100.0
            layer.set_weights([kernel, bias])


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_recycle(model, x, y, probe, reps, batch_size=256):
    """(a): fastest recycle vs fastest check (and a second check), interleaved."""
    model.fit(x[:1024], y[:1024], batch_size=128, verbose=0)  # Adam's slots exist
    checker = neurons.Probe(model, probe)  # what a DeadNeuronMonitor check runs
    xs = checker.convert(probe)
    redo = keras_relu.ReDo(probe=probe, batch_size=batch_size)
    redo.set_model(model)
    redo.on_train_begin()  # builds and compiles its probe
    checker.measure(xs, batch_size=batch_size)  # compiles this one
    def recycle():
        recycled = redo.recycle()
        assert sum(map(len, recycled.values())) >= 10, recycled

    variants = {"recycle": recycle,
                "check": lambda: checker.measure(xs, batch_size=batch_size),
                "check_again": lambda: checker.measure(xs, batch_size=batch_size)}
    times = {name: [] for name in variants}
    names = list(variants)
    for rep in range(reps):  # rotated order: none always runs first after the weights change
        _force_dead(model)
        for name in names[rep % 3:] + names[:rep % 3]:
            times[name].append(_timed(variants[name]))
    return {k: min(v) for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--cases", default="a,b,c", help="which of (a), (b), (c) to run")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    x, y, probe, dx, dy = bench_data(args.samples)

    rows = []
    if "a" in cases:
        cnn = compile_model(small_cnn())
        t = bench_recycle(cnn, x, y, probe, args.reps * 10)  # cheap: many rounds, fastest kept
        rows.append(("(a) recycle vs check, 2048 probe, CNN", t["recycle"], t["check"],
                     "<= 1.30x"))
        rows.append(("(a') check_again vs check (noise floor)", t["check_again"], t["check"], ""))
    if "b" in cases:
        with_, without = fastest_epochs(compile_model(small_cnn()), x, y,
                                        keras_relu.ReDo(probe=probe), args.reps, 128)
        rows.append((f"(b) epoch, {args.samples} x 32x32x3, CNN", with_, without, "reported"))
    if "c" in cases:
        with_, without = fastest_epochs(compile_model(digits_mlp(), lr=0.01), dx, dy,
                                        keras_relu.ReDo(probe=dx), args.reps, batch_size=64)
        rows.append(("(c) epoch, digits 1797 x 64, MLP", with_, without, "reported"))

    print(f"\nbackend: {keras.backend.backend()}   (fastest of the repetitions, seconds)")
    print(f"{'case':44} {'ReDo':>9} {'plain':>9} {'ratio':>7}  target")
    for name, a, b, target in rows:
        print(f"{name:44} {a:9.4f} {b:9.4f} {a / b:6.3f}x  {target}")


if __name__ == "__main__":
    main()
