"""SugarReLU against plain ReLU in executed instructions, side by side (valgrind).

    python benchmarks/bench_sugar_callgrind.py [--backends tensorflow,jax,torch] [--steps 4]

Wall-clock ratios on a shared 2-core VM wander by 5-10% (see bench_sugar.py's
`relu_again` row), more than the 2-5% the targets allow. Callgrind counts the
instructions a step executes instead, which repeat exactly whatever the machine
is doing. Each backend runs in one process under `valgrind --tool=callgrind`,
single-threaded (a thread pool's spinning would count too), with
instrumentation off except around `--steps` train steps and then `--steps`
inference steps of each variant, after a warm-up. The models are those of
bench_sugar.py. Instructions are not time: memory traffic is not in them, so
bench_sugar.py still measures time and peak memory.
"""

import argparse
import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sugar_models import BATCH, ROOT, VARIANTS, build_model, make_data  # noqa: E402

_CLIENT = r"""
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void stop(const char *name) { CALLGRIND_DUMP_STATS_AT(name); CALLGRIND_STOP_INSTRUMENTATION; }
"""
_SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def _client(folder):
    source, library = os.path.join(folder, "client.c"), os.path.join(folder, "client.so")
    with open(source, "w") as f:
        f.write(_CLIENT)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", source, "-o", library], check=True)
    return library


def worker(library, steps):
    """Runs under callgrind: warm up every variant, then count each one's steps."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    client = ctypes.CDLL(library)
    x, y = make_data(BATCH)
    models = {v: build_model(v) for v in VARIANTS if v != "relu_again"}
    phases = {"train": lambda m: m.train_on_batch(x, y), "infer": lambda m: m.predict_on_batch(x)}
    for model in models.values():
        for step in phases.values():
            step(model), step(model)
    for variant, model in models.items():
        for phase, step in phases.items():
            client.start()
            for _ in range(steps):
                step(model)
            client.stop(f"{variant}-{phase}".encode())


def _totals(folder):
    """{dump name: instructions} from the callgrind output files in `folder`."""
    counts = {}
    for path in glob.glob(os.path.join(folder, "callgrind.out.*")):
        with open(path) as f:
            text = f.read()
        trigger = re.search(r"^desc: Trigger: Client Request: (\S+)", text, re.M)
        total = re.search(r"^totals: (\d+)", text, re.M)
        if trigger and total:
            counts[trigger.group(1)] = int(total.group(1))
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--steps", type=int, default=4, help="steps counted per variant and phase")
    parser.add_argument("--worker", nargs=2, metavar=("LIBRARY", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]))
    missing = [tool for tool in ("valgrind", "gcc") if shutil.which(tool) is None]
    if missing:
        parser.exit(2, f"bench_sugar_callgrind.py needs {' and '.join(missing)} on PATH "
                       "(Debian: apt-get install valgrind gcc)\n")
    print(f"MLP of bench_sugar.py, batch {BATCH}; instructions per step (callgrind, one thread)")
    print(f"{'backend':<11}{'variant':<11}{'train Minstr':>13}{'ratio':>7}{'infer Minstr':>13}{'ratio':>7}")
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as folder:
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **_SINGLE_THREAD)
            subprocess.run(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file",
                 f"--callgrind-out-file={folder}/callgrind.out.%p", sys.executable, __file__,
                 "--worker", _client(folder), str(args.steps)],
                cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            counts = {k: v / args.steps / 1e6 for k, v in _totals(folder).items()}
        for variant in ("relu", "sugar", "injection"):
            train, infer = counts[f"{variant}-train"], counts[f"{variant}-infer"]
            print(f"{backend:<11}{variant:<11}{train:>13.1f}{train / counts['relu-train']:>7.3f}"
                  f"{infer:>13.1f}{infer / counts['relu-infer']:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
