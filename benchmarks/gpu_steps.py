"""The steps of benchmarks/gpu_check.py that are not scripts of their own, one per process.

    KERAS_BACKEND=torch python benchmarks/gpu_steps.py STEP [--smoke] [--expect gpu|cpu]

STEP: `env` (imports, versions, the device Keras computes on), `sugar_tests` (the SugarReLU
gradient tests, tests/test_sugar*.py, on the default device), `sugar_device` (SugarReLU's
gradient of a large activation on the device against the float64 derivative, and its
forward + backward time against ReLU's), `search_mixed` / `search_devices` (a search with
`--mixed-precision` / `--devices 0`, its trials read back from its MLflow store).
Each prints its figures as `FIGURE {json}` lines and exits non-zero when a check fails.
"""

import argparse
import importlib
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")


def figure(**values):
    print("FIGURE " + json.dumps(values, default=str), flush=True)


def device_of(tensor):
    devices = getattr(tensor, "devices", None)  # jax
    return ",".join(map(str, devices())) if callable(devices) else str(tensor.device)


def env_step(args):
    """Every module the check needs imports; Keras computes where `--expect` says."""
    versions, failed = {}, []
    for name in ("keras", BACKEND, "keras_relu", "optuna", "optuna_integration", "keras_tuner",
                 "mlflow", "sqlalchemy", "plotly", "search.api", "search.parallel.worker",
                 "search.engines.optuna", "search.engines.kerastuner", "pytest"):
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "-")
        except Exception as err:  # each failing import is reported, then the step fails
            failed.append(f"{name}: {type(err).__name__}: {err}")
    import platform

    figure(python=platform.python_version(), versions=versions, failed_imports=failed)
    from keras import ops

    from search import runtime

    gpu = runtime.has_gpu()
    figure(device=device_of(ops.ones((1,))), gpu=gpu, mixed_policy=runtime.mixed_policy())
    if args.expect == "gpu" and not gpu:
        failed.append(f"Keras on {BACKEND} computes on the CPU, not on the GPU")
    print("\n".join(failed))
    return 1 if failed else 0


class _Outcomes:
    """A pytest plugin counting outcomes."""

    def __init__(self):
        self.counts, self.failures = {}, []

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            self.counts[report.outcome] = self.counts.get(report.outcome, 0) + 1
            if report.failed:
                self.failures.append(f"{report.nodeid} ({report.when})")


# On the GPU: every gradient test; the fused kernel against the portable op for each
# surrogate in float32 and for B-SiLU in half precision (each case compiles a kernel)
GPU_TESTS = "not digits_loss_curve and (not fast_path_equals or float32 or bsilu)"
SMOKE_TESTS = "gradient_is_the_analytic_derivative and bsilu"  # wiring: no kernel to compile


def sugar_tests_step(args):
    import pytest

    from keras import ops

    outcomes = _Outcomes()
    code = pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", ROOT,
                        os.path.join(ROOT, "tests", "test_sugar.py"),
                        os.path.join(ROOT, "tests", "test_sugar_fast.py"),
                        "-k", SMOKE_TESTS if args.smoke else GPU_TESTS], plugins=[outcomes])
    figure(device=device_of(ops.ones((1,))), **outcomes.counts, failures=outcomes.failures)
    return int(code)


def _grad_and_time(fn, x, upstream, repeats):
    """(d sum(fn(x) * upstream) / dx as float32 NumPy, fastest forward + backward in ms)."""
    import numpy as np
    from keras import ops

    if BACKEND == "torch":
        import torch

        def step():
            xt = x.detach().requires_grad_(True)
            (fn(xt) * upstream).sum().backward()
            return xt.grad

        sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    else:
        import jax

        grad = jax.jit(jax.grad(lambda v: (fn(v) * upstream).sum()))

        def step():
            return grad(x)

        sync = None
    g = step()  # compiles
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = step()
        if sync:
            sync()
        else:
            out.block_until_ready()
        best = min(best, time.perf_counter() - start)
    return np.asarray(ops.convert_to_numpy(ops.cast(g, "float32"))), 1e3 * best


# Against the float64 derivative times the upstream gradient: the tests' tolerances, and
# one more rounding of the product in half precision
TOLERANCE = {"float32": (2e-5, 2e-6), "float16": (4e-3, 4e-5), "bfloat16": (2e-2, 2e-4)}


def sugar_device_step(args):
    """B-SiLU's gradient through SugarReLU's op (torch: the Inductor-compiled backward) and
    through the portable op, on the device, against the float64 derivative; and the forward
    + backward time of each against ReLU's."""
    import keras
    import numpy as np
    from keras import ops

    from keras_relu import sugar, sugar_backends
    from keras_relu.sugar import _sugar_eager
    from keras_relu.surrogates import get_surrogate
    from tests.test_sugar import REFERENCE

    shape = (4, 8, 8, 8) if args.smoke else (64, 128, 64, 64)  # 33.5M entries on the GPU
    spec = get_surrogate("bsilu")
    ops_by_name = {"relu": ops.relu, "sugar": lambda v: sugar(v, "bsilu"),
                   "portable": lambda v: _sugar_eager(v, spec.derivative, spec.defaults)}
    failed = 0
    for dtype in ("float32",) if args.smoke else ("float32", "bfloat16", "float16"):
        x = keras.random.normal(shape, dtype=dtype, seed=0) * 4
        upstream = keras.random.uniform(shape, 0.5, 2.0, dtype=dtype, seed=1)
        x64 = ops.convert_to_numpy(ops.cast(x, "float32")).astype("float64")
        want = REFERENCE["bsilu"](x64) * ops.convert_to_numpy(
            ops.cast(upstream, "float32")).astype("float64")
        row = {"dtype": dtype, "shape": shape, "device": device_of(x)}
        for name, fn in ops_by_name.items():
            g, ms = _grad_and_time(fn, x, upstream, repeats=3 if args.smoke else 10)
            row[f"{name}_ms"] = round(ms, 4)
            if name != "relu":
                rtol, atol = TOLERANCE[dtype]
                share = float((np.abs(g - want) / (atol + rtol * np.abs(want))).max())
                row[f"{name}_error_of_tolerance"] = round(share, 4)  # <= 1: within it
                failed += not (share <= 1 and np.isfinite(g).all())
        row["sugar_ratio"] = round(row["sugar_ms"] / row["relu_ms"], 4)
        row["portable_ratio"] = round(row["portable_ms"] / row["relu_ms"], 4)
        figure(**row)
    figure(paths=dict(sugar_backends.PATHS))
    if BACKEND == "torch" and not args.smoke and not sugar_backends.PATHS["compiled"]:
        failed += 1  # the fused backward never ran (the smoke's toy is below COMPILE_FROM)
    return 1 if failed else 0


def search_step(args, name, **options):
    """One search (`search.run`, as `keras-relu search` runs it) in a fresh folder; its
    trials read back from the MLflow store: times, and the device each worker was given."""
    os.chdir(tempfile.mkdtemp(prefix=f"gpu-check-{name}-"))  # the default stores go there
    import search
    from mlflow import MlflowClient

    from search import runtime

    trials = 1 if args.smoke else 4
    start = time.perf_counter()
    result = search.run(trials=trials, epochs=1 if args.smoke else 2, study_name=name,
                        progress=False, **options)
    wall = time.perf_counter() - start
    print(result.report(), flush=True)
    client = MlflowClient(result.tracking_uri)
    children = [r for r in client.search_runs(
        [client.get_experiment_by_name(name).experiment_id])
        if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    done = [r.info for r in children if r.info.status == "FINISHED"]
    span = (max(r.end_time for r in done) - min(r.start_time for r in done)) / 1e3 if done else 0
    devices = sorted({r.data.tags.get("device", "-") for r in children})
    policy = runtime.mixed_policy() if options.get("mixed_precision") else "float32"
    figure(search=name, options=options, wall_s=round(wall, 1), finished=len(done),
           trials_per_min=round(60 * len(done) / span, 2) if span else None,
           trials_per_min_with_startup=round(60 * len(done) / wall, 2),
           trial_s=[round((r.end_time - r.start_time) / 1e3, 2) for r in done],
           devices=devices, policy=policy,
           best_val_accuracy=result.best[0].val_accuracy if result.best else None)
    pinned = devices == [options["devices"]] if "devices" in options else True
    return 0 if len(done) == trials and pinned else 1


STEPS = {
    "env": env_step,
    "sugar_tests": sugar_tests_step,
    "sugar_device": sugar_device_step,
    "search_mixed": lambda args: search_step(args, "gpu-mixed", mixed_precision=True),
    "search_devices": lambda args: search_step(args, "gpu-devices", devices="0"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--smoke", action="store_true", help="a toy size, on the CPU")
    parser.add_argument("--expect", choices=("gpu", "cpu"), default="cpu",
                        help="env: fail unless Keras computes there")
    args = parser.parse_args()
    sys.exit(STEPS[args.step](args))


if __name__ == "__main__":
    main()
