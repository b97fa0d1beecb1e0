"""SugarReLU against plain ReLU on an MLP and a small CNN, side by side.

    python benchmarks/bench_sugar.py [--backends tensorflow,jax,torch] [--models mlp,cnn]
        [--variants relu,relu_again,sugar,sugar_nelu,sugar_gelu] [--device cpu] [--figures]
    python benchmarks/bench_sugar.py --backends tensorflow --models cnn \
        --variants relu,relu_again,sugar,xla_relu,xla_sugar     # XLA for the whole step

Models: mlp, cnn and cnn_large (64x64 maps, up to 128 channels: a GPU's size); with
BENCH_SUGAR_SIZE=tiny in the environment each is a few seconds' toy (gpu_check's smoke).
`--figures` also prints each row as `FIGURE {json}` (benchmarks/gpu_check.py collects them).

Speed: a process holds every variant of a model (same weights) and interleaves
them in blocks of a few steps, round after round in rotated order; each variant
keeps its fastest block. Interleaving in one process takes out what differs
between processes (thread placement, the VM's neighbours), and the fastest
block takes out TensorFlow's random flips to a ~2x slower mode on small CPUs
(see the project's DESIGN notes). What stays is where each model's buffers
landed: the model built first can run a few percent faster or slower than an
identical one built later. So `--processes` processes build the variants in
rotated order and each variant keeps its fastest block over all of them.
`relu_again` is plain ReLU timed a second time: its ratio is the noise floor.

Allocator: glibc's malloc hands buffers above its mmap threshold (at most 32 MiB,
moved as buffers are freed) back to the system, so a step can fault the same
activations in again: on this VM that is up to a third of a CNN step, and it
depends on what was freed before, so identical models differ by 10-20%.
`--allocator keep` runs the speed processes with a fixed threshold of 256 MiB
(`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`), as a long training run
settles into anyway; `default` leaves malloc alone.

Memory: the same moving threshold makes a peak depend on which buffers were freed
before, not on what is alive: freed buffers below it stay in the heap and count in
the resident set (torch CNN, plain ReLU, identical runs: 128 and 208 MiB). So the
memory processes fix the threshold at 1 MiB (`MALLOC_MMAP_THRESHOLD_`): every
buffer from 1 MiB up is mapped on its own and returned when freed, and the resident
set follows the live buffers. The peak resident set while training, above what the
process held before the model was built (Linux VmHWM, reset first), one process
per model and variant since a peak cannot be shared. The first epoch's peak includes
what a compiler takes once (XLA on TensorFlow, Inductor on torch), paid once per
process; the second epoch's peak above its own start is the steady cost of a
training step. On an accelerator, host memory only.

Variants: see sugar_models.py.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_kerastuner_memory import status_mib  # noqa: E402
from sugar_models import (  # noqa: E402
    MODELS, ROOT, NAMED_VARIANTS, batch_size, build_model, describe, epoch_samples, hold_path,
    make_data, unknown_variants)

DEFAULT_VARIANTS = ("relu", "relu_again", "sugar", "sugar_nelu", "sugar_gelu")
STEPS = {"mlp": 8, "cnn": 3, "cnn_large": 3}  # steps per timed block


def _device_of(model):
    """Where the model's weights live, as the backend names it."""
    value = model.trainable_variables[0].value
    devices = getattr(value, "devices", None)  # jax
    if callable(devices):
        return ",".join(str(d) for d in value.devices())
    return str(value.device) or "default"


def speed_worker(arch, variants, rounds, order=0):
    """All variants of one model in this process, built from the `order`-th one on and
    interleaved; one JSON line: fastest ms per training and inference step, and the device."""
    x, y = make_data(batch_size(arch), arch)
    from keras_relu import sugar_backends

    default_from = dict(sugar_backends.COMPILE_FROM)
    built = variants[order % len(variants):] + variants[:order % len(variants)]
    models = {v: build_model(v, arch) for v in built}
    steps = {
        "train_ms": lambda m: m.train_on_batch(x, y),
        "predict_ms": lambda m: m.predict_on_batch(x),
    }
    for variant, model in models.items():  # compile and warm up
        hold_path(variant, default_from)
        for step in steps.values():
            for _ in range(3):
                step(model)
    best = {v: {key: float("inf") for key in steps} for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for variant in order if r % 2 == 0 else order[::-1]:
            hold_path(variant, default_from)
            for key, step in steps.items():
                start = time.perf_counter()
                for _ in range(STEPS[arch]):
                    step(models[variant])
                ms = 1e3 * (time.perf_counter() - start) / STEPS[arch]
                best[variant][key] = min(best[variant][key], ms)
    print(json.dumps({"best": best, "device": _device_of(models[variants[0]]),
                      "paths": dict(sugar_backends.PATHS)}))


def memory_worker(arch, variant):
    """One variant in this process: one JSON line, the first epoch's peak MiB above the
    baseline and the second epoch's above its start."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter
    x, y = make_data(epoch_samples(arch), arch)
    import keras  # noqa: F401  (imported before the baseline is read)

    from keras_relu import sugar_backends

    hold_path(variant, dict(sugar_backends.COMPILE_FROM))
    base_mib = status_mib("VmRSS")
    model = build_model(variant, arch)
    batch = batch_size(arch)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    first_mib = status_mib("VmHWM") - base_mib
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base_mib = status_mib("VmRSS")
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    print(json.dumps({"train_mib": first_mib,
                      "step_mib": status_mib("VmHWM") - base_mib}))


ALLOCATORS = {  # glibc malloc settings by name (see above)
    "keep": {"MALLOC_MMAP_THRESHOLD_": str(256 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)},
    "exact": {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)},
    "default": {},
}


def _run(backend, device, *args, allocator="default"):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env.update(ALLOCATORS[allocator])
    command = [sys.executable, __file__, *args] + (["--device", device] if device else [])
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{backend} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure(backend, arch, args):
    """{variant: {train_ms, predict_ms, train_mib, step_mib}} and (device, paths) for one
    backend and model."""
    variants = args.variants.split(",")
    best = {v: {} for v in variants}
    for order in range(args.processes):
        speed = _run(backend, args.device, "--speed-worker", arch, "--variants", args.variants,
                     "--rounds", str(args.rounds), "--order", str(order),
                     allocator=args.allocator)
        for variant, times in speed["best"].items():
            for key, ms in times.items():
                best[variant][key] = min(ms, best[variant].get(key, ms))
    for r in range(args.memory_rounds):
        for variant in variants if r % 2 == 0 else variants[::-1]:
            peaks = _run(backend, args.device, "--memory-worker", arch, "--variants", variant,
                         allocator="exact")
            for key, mib in peaks.items():
                best[variant][key] = min(mib, best[variant].get(key, mib))
    return best, (speed["device"], speed.get("paths")) if args.processes else ("-", None)


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help="relu first; relu_again, sugar, sugar_<surrogate>, injection, "
                             "bsilu_compiled, bsilu_uncompiled, relu_custom; xla_<variant>: "
                             "compiled with jit_compile=True")
    parser.add_argument("--device", help="e.g. cpu, gpu, gpu:0 (default: the backend's)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds per process")
    parser.add_argument("--processes", type=int, default=3,
                        help="speed processes per backend and model, each building the "
                             "variants in another order (0: memory only)")
    parser.add_argument("--allocator", choices=("keep", "default"), default="keep",
                        help="keep: glibc keeps freed buffers for reuse (see above)")
    parser.add_argument("--order", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--memory-rounds", type=int, default=1, help="0: no memory column")
    parser.add_argument("--figures", action="store_true", help="each row also as FIGURE {json}")
    parser.add_argument("--speed-worker", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", choices=MODELS, help=argparse.SUPPRESS)
    return parser.parse_args()


def _bad_arguments(args):
    """What is wrong with the command line, in a few words, or None."""
    unknown = set(args.backends.split(",")) - {"tensorflow", "jax", "torch"}
    if unknown:
        return f"unknown backend(s) {', '.join(sorted(unknown))}"
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        return f"unknown model(s) {', '.join(sorted(unknown))}; valid: {', '.join(MODELS)}"
    variants = args.variants.split(",")
    unknown = unknown_variants(variants)
    if unknown:
        return f"unknown variant(s) {', '.join(unknown)}"
    if variants[0] != "relu":
        return "--variants must start with relu, the baseline of every ratio"
    if "torch" in args.backends.split(",") and any(v.startswith("xla_") for v in variants):
        return "xla_ variants need tensorflow or jax (Keras' jit_compile on torch has an open bug)"
    if args.processes < 0 or args.rounds < 1:
        return "--processes must be >= 0 (0: memory only) and --rounds >= 1"
    return None


def _worker(args):
    import contextlib

    import keras

    scope = keras.device(args.device) if args.device else contextlib.nullcontext()
    with scope:
        if args.speed_worker:
            return speed_worker(args.speed_worker, args.variants.split(","), args.rounds,
                                args.order)
        return memory_worker(args.memory_worker, args.variants)


def main():
    args = _parse()
    if args.speed_worker or args.memory_worker:
        return _worker(args)
    problem = _bad_arguments(args)
    if problem:
        sys.stderr.write(f"bench_sugar.py: {problem}\n")
        sys.exit(2)
    models = args.models.split(",")
    print(f"{'; '.join(describe(m) for m in models)}; adam, default compile (xla_: jit_compile=True); fastest "
          f"block of {STEPS} steps in {args.rounds} interleaved rounds x {args.processes} "
          f"processes, malloc: {args.allocator}; memory: smallest-of-"
          f"{args.memory_rounds} peak RSS of a first epoch and of a second "
          f"({', '.join(str(epoch_samples(m)) for m in models)} samples), malloc: exact",
          flush=True)
    print(f"{'backend':<11}{'model':<10}{'variant':<17}{'train ms':>9}{'ratio':>7}{'infer ms':>9}"
          f"{'ratio':>7}{'train MiB':>10}{'ratio':>7}{'step MiB':>9}{'ratio':>7}  device")
    for backend in args.backends.split(","):
        for arch in models:
            best, (device, paths) = _measure(backend, arch, args)
            for variant, b in best.items():
                _print_row(backend, arch, variant, b, best["relu"], device, args.figures)
            if paths:
                print(f"{'':<26}sugar backward passes built: {paths}", flush=True)


def _print_row(backend, arch, variant, b, ref, device, figures):
    print(f"{backend:<11}{arch:<10}{variant:<17}"
          + "".join(f"{b[k]:>{w}.{p}f}{b[k] / ref[k]:>7.3f}" if k in b else
                    f"{'-':>{w}}{'-':>7}" for k, w, p in
                    (("train_ms", 9, 2), ("predict_ms", 9, 2), ("train_mib", 10, 1),
                     ("step_mib", 9, 1)))
          + f"  {device}", flush=True)
    if figures:
        row = {"backend": backend, "model": arch, "variant": variant, "device": device,
               **{k: round(v, 4) for k, v in b.items()},
               **{f"{k}_ratio": round(v / ref[k], 4) for k, v in b.items()}}
        print("FIGURE " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
