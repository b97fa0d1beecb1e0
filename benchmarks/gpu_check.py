"""Every GPU path of keras-relu, checked and timed by one command on a bare GPU machine.

    python3 benchmarks/gpu_check.py [--out DIR] [--wheels .whl] [--site DIR]
        [--backends torch,jax] [--steps STEP,...] [--budget 450] [--cpu-smoke]

First it installs the carried wheels (benchmarks/gpu_wheels.txt, fetched beforehand into
.whl/ by benchmarks/gpu_wheels.py) with `pip install --no-index --no-deps --target SITE`.
Then, for each backend, each step in a process of its own under a time limit:
  env             imports and versions; Keras computes on the GPU
  sugar_tests     SugarReLU's gradient tests (tests/test_sugar*.py) on the GPU: torch's
                  compiled backward and the portable op against the float64 derivatives
  sugar_device    B-SiLU's gradient of a 33.5M-entry activation against the float64
                  derivative (float32, bfloat16, float16); its forward + backward vs ReLU's
  bench_sugar     bench_sugar.py --device gpu on mlp, cnn, cnn_large: relu, relu_again
                  (the control row) and sugar, training and inference steps
  monitor         bench_monitor.py --cases a,b: the monitor's check against predict, and
                  an epoch with and without the monitor, on the GPU
  search_mixed    a search as `keras-relu search --trials 4 --epochs 2 --mixed-precision`
                  runs it: trials per minute
  search_devices  the same with `--devices 0`: its one worker pinned to GPU 0
Steps stop at their limit or when --budget seconds are spent (those left are skipped).

Figures: DIR/gpu_check.txt, each step's `FIGURE {json}` lines written as they come, so a
step stopped at its limit keeps what it printed; every step's output in DIR/gpu_check.log.
DIR: --out, else $GPU_CHECK_OUT, else $OUT, else ./gpu_check_out.

Exit status 0 when every step passed; 1 when one failed, was stopped or skipped, and when
there is no GPU (said in one line); 2 for bad arguments. `--cpu-smoke` runs every step at
a toy size on the CPU instead (CI does), with imports limited to the GPU machine's
packages (gpu_machine/packages.txt) and the carried wheels: a wheel missing from the list
fails there as it would on the GPU machine.
"""

import argparse
import datetime
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from gpu_wheels import canonical, read_list  # noqa: E402

BACKENDS = ("torch", "jax")
STEPS = ("env", "sugar_tests", "sugar_device", "bench_sugar", "monitor", "search_mixed",
         "search_devices")
LIMITS = {"install": 60, "env": 60, "sugar_tests": 150, "sugar_device": 90,
          "bench_sugar": 120, "search_mixed": 120, "search_devices": 120, "monitor": 90}
MACHINE_PACKAGES = os.path.join(HERE, "gpu_machine", "packages.txt")
# The smoke runs these steps on one backend each: their code is the same on both (what
# differs, the training and the probe, the other steps and the test suite cover)
SMOKE_BACKENDS = {"env": "jax", "search_mixed": "torch", "search_devices": "torch",
                  "monitor": "torch"}


def step_command(step, backend, smoke):
    """The command line of one step."""
    python, size = sys.executable, ["--smoke"] if smoke else []
    if step == "bench_sugar":
        return [python, os.path.join(HERE, "bench_sugar.py"), "--backends", backend,
                "--models", "cnn_large" if smoke else "mlp,cnn,cnn_large",
                "--variants", "relu,relu_again,sugar", "--device", "cpu" if smoke else "gpu",
                "--processes", "1", "--rounds", "1" if smoke else "5", "--memory-rounds", "0",
                "--figures"]
    if step == "monitor":
        return [python, os.path.join(HERE, "bench_monitor.py"), "--figures",
                *(["--cases", "a", "--samples", "256", "--reps", "1"] if smoke else
                  ["--cases", "a,b", "--samples", "50000", "--reps", "3"])]
    expect = ["--expect", "cpu" if smoke else "gpu"] if step == "env" else []
    return [python, os.path.join(HERE, "gpu_steps.py"), step, *size, *expect]


def step_backends(step, args):
    """The backends a step runs on: all asked for; one in the smoke where SMOKE_BACKENDS
    names one (that one if asked for, else the first)."""
    backends = args.backends.split(",")
    if args.cpu_smoke and step in SMOKE_BACKENDS:
        return [SMOKE_BACKENDS[step] if SMOKE_BACKENDS[step] in backends else backends[0]]
    return backends


def find_gpus():
    """The GPUs `nvidia-smi -L` lists (else the driver's /proc entries), or []."""
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    gpus = [line.strip() for line in listed.splitlines() if line.startswith("GPU ")]
    return gpus or sorted(glob.glob("/proc/driver/nvidia/gpus/*"))


def masked_modules(allowed):
    """Modules installed here whose distributions are all outside `allowed` (canonical
    names): top-level names, and `top.sub` inside a namespace package several share."""
    import collections
    import importlib.metadata as metadata

    tops = metadata.packages_distributions()
    shared = {top for top, dists in tops.items() if len(set(map(canonical, dists))) > 1}
    owners = collections.defaultdict(set)
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"] or "")
        for path in dist.files or ():
            parts = path.parts
            top = parts[0].split(".")[0] if parts else ""
            if top not in tops or (top in shared and len(parts) < 2):
                continue
            if top in shared:  # a namespace package: its sub-packages and modules
                if len(parts) == 2 and (not parts[1].endswith((".py", ".so"))
                                        or parts[1].startswith("__init__.")):
                    continue
                top = f"{top}.{parts[1].split('.')[0]}"
            owners[top].add(name)
    return sorted(module for module, dists in owners.items() if not dists & allowed)


def smoke_mask(folder):
    """Writes the modules the GPU machine would lack to a file in `folder`; its path."""
    with open(MACHINE_PACKAGES) as f:
        allowed = {canonical(line) for line in f if line.strip() and not line.startswith("#")}
    allowed |= {canonical(name) for name, _ in read_list()} | {"keras-relu"}
    path = os.path.join(folder, "masked_modules.txt")
    with open(path, "w") as f:
        f.write("\n".join(masked_modules(allowed)) + "\n")
    return path


class Report:
    """The figures file and the log, both written as the steps go."""

    def __init__(self, folder, mode):
        os.makedirs(folder, exist_ok=True)
        self.figures = open(os.path.join(folder, "gpu_check.txt"), "w", buffering=1)
        self.log = open(os.path.join(folder, "gpu_check.log"), "w", buffering=1)
        self.results = []
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        self.write(f"# keras-relu gpu_check {stamp} mode={mode} python={sys.version.split()[0]}")

    def write(self, line, figures=True):
        if figures:
            self.figures.write(line + "\n")
        self.log.write(line + "\n")
        print(line, flush=True)

    def run(self, name, command, env, limit):
        """Runs one step; its FIGURE lines go to the figures file as they are printed."""
        self.write(f"## {name}")
        start = time.monotonic()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        tail = []
        reader = threading.Thread(target=self._read, args=(proc.stdout, tail), daemon=True)
        reader.start()
        try:
            code = proc.wait(limit)
            status = "ok" if code == 0 else f"FAILED (exit {code})"
        except subprocess.TimeoutExpired:
            _stop(proc)
            status = f"STOPPED at its limit of {limit:.0f} s"
        reader.join(30)  # a worker that outlived its step may hold the pipe: not for ever
        self.end(name, status, time.monotonic() - start, tail)

    def _read(self, stream, tail):
        for line in stream:
            self.log.write(line)
            if line.startswith("FIGURE "):
                self.figures.write(line[len("FIGURE "):])
            tail[:] = (tail + [line.rstrip()])[-15:]

    def end(self, name, status, seconds, tail=()):
        self.results.append((name, status, seconds))
        self.write(f"-- {name}: {status}, {seconds:.1f} s")
        if status != "ok":
            for line in tail:
                self.write(f"   | {line}")

    def summary(self, began):
        bad = [r for r in self.results if r[1] != "ok"]
        self.write(f"## summary: {len(self.results) - len(bad)} of {len(self.results)} steps "
                   f"ok in {time.monotonic() - began:.0f} s")
        for name, status, seconds in self.results:
            self.write(f"   {name:<24} {status:<40} {seconds:7.1f} s")
        return 1 if bad else 0


def _stop(proc):
    """SIGINT the step's process group (a search stops its workers), then SIGKILL it."""
    for sig, grace in ((signal.SIGINT, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def step_env(args, backend, site, mask):
    path = [p for p in (mask and os.path.join(HERE, "gpu_machine"), ROOT, site,
                        os.environ.get("PYTHONPATH")) if p]
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": os.pathsep.join(path),
           "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg",
           "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if args.cpu_smoke:
        env.update(BENCH_SUGAR_SIZE="tiny", JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
                   KERAS_RELU_GPU_MASK=mask, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    return env


def install(report, args, site):
    """pip installs the carried wheels into `site`; fails when the list's are not all there."""
    files = sorted(glob.glob(os.path.join(args.wheels, "*.whl")))
    have = {canonical(os.path.basename(f).split("-")[0]) for f in files}
    missing = [f"{n}=={v}" for n, v in read_list() if canonical(n) not in have]
    report.write(json.dumps({"wheels": len(files), "missing": missing,
                             "MiB": round(sum(map(os.path.getsize, files)) / 2**20, 1)}))
    if missing or not files:
        report.end("install", f"FAILED ({len(missing)} wheels missing in {args.wheels}: run "
                              "python benchmarks/gpu_wheels.py where pip can download)", 0.0)
        return
    report.run("install", [sys.executable, "-m", "pip", "install", "-q", "--no-index",
                           "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade",
                           "--target", site, *files], dict(os.environ), LIMITS["install"])


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="figures folder (default $GPU_CHECK_OUT, $OUT, "
                                      "./gpu_check_out)")
    parser.add_argument("--wheels", default=os.path.join(ROOT, ".whl"))
    parser.add_argument("--site", default=os.path.join(tempfile.gettempdir(),
                                                       "keras-relu-site"))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--budget", type=float, default=450,
                        help="seconds for all steps (default 450); later steps are skipped")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="every step at a toy size on the CPU (no wheels installed)")
    args = parser.parse_args(argv)
    for option, valid in (("backends", BACKENDS), ("steps", STEPS)):
        unknown = set(getattr(args, option).split(",")) - set(valid)
        if unknown:
            parser.exit(2, f"gpu_check.py: unknown --{option} {', '.join(sorted(unknown))}; "
                           f"valid: {', '.join(valid)}\n")
    args.out = (args.out or os.environ.get("GPU_CHECK_OUT") or os.environ.get("OUT")
                or os.path.join(os.getcwd(), "gpu_check_out"))
    return args


def main(argv=None):
    args = parse(argv)
    gpus = [] if args.cpu_smoke else find_gpus()
    if not args.cpu_smoke and not gpus:
        sys.exit("gpu_check.py: no GPU here (nvidia-smi lists none); --cpu-smoke runs "
                 "every step at a toy size on the CPU")
    began = time.monotonic()
    report = Report(args.out, "cpu-smoke" if args.cpu_smoke else f"gpu ({'; '.join(gpus)})")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        mask, site = None, None
        if args.cpu_smoke:
            mask = smoke_mask(scratch)
        else:
            site = args.site
            install(report, args, site)
        for step in args.steps.split(","):
            for backend in step_backends(step, args):
                left = args.budget - (time.monotonic() - began)
                if left < 20 and not args.cpu_smoke:
                    report.end(f"{step} {backend}", "SKIPPED: no time left in --budget", 0.0)
                    continue
                limit = LIMITS[step] if args.cpu_smoke else min(LIMITS[step], left)
                report.run(f"{step} {backend}", step_command(step, backend, args.cpu_smoke),
                           step_env(args, backend, site, mask), limit)
    sys.exit(report.summary(began))


if __name__ == "__main__":
    main()
