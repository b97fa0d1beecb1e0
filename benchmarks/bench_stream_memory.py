"""Peak memory of a search over a streamed data set, at one nominal size and at ten times it.

    KERAS_BACKEND=tensorflow python benchmarks/bench_stream_memory.py [--samples 20000]
        [--features 1024] [--trials 2]

A `keras.utils.PyDataset` makes its samples on the fly (each a deterministic function of
its index; nothing is held), `--samples` of them and ten times as many, `--features` float32
features each: at 200,000 x 1,024 the arrays would take 781 MiB. Each size runs
`search.run` (2 trials of 1 epoch, the built-in MLP, no control trials) in a process of its
own; the first size runs twice, the second run being the control. Reported: each process's
peak resident memory (VmHWM). Target: ten times the samples under 1.1x the peak.
"""

import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import os, sys
sys.path.insert(0, {root!r})
import numpy as np
from search.runtime import import_keras
keras = import_keras()
import search

SAMPLES, FEATURES, TRIALS = {samples}, {features}, {trials}


class OnTheFly(keras.utils.PyDataset):
    def __init__(self, count, offset, batch_size=256):
        super().__init__()
        self.count, self.offset, self.batch_size = count, offset, batch_size

    def __len__(self):
        return -(-self.count // self.batch_size)

    def __getitem__(self, i):
        index = self.offset + np.arange(i * self.batch_size,
                                        min(self.count, (i + 1) * self.batch_size))
        rng = np.random.default_rng(index[0])
        y = (index % 4).astype("int32")
        x = rng.standard_normal((len(index), FEATURES)).astype("float32") + y[:, None] * 0.5
        return x, y


search.run(data=OnTheFly(SAMPLES, 0), validation_data=OnTheFly(2048, 10**9),
           test_data=OnTheFly(2048, 2 * 10**9), trials=TRIALS, epochs=1, controls=False,
           progress=False, study_name="memory", fix=["depth=2", "width=64"])
status = open("/proc/self/status").read().split("\\n")
print(next(l for l in status if l.startswith("VmHWM")).split()[1])
"""


def peak_mib(samples, features, trials):
    code = CHILD.format(root=ROOT, samples=samples, features=features, trials=trials)
    with tempfile.TemporaryDirectory(prefix="bench_stream_") as folder:
        proc = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                              text=True, env=dict(os.environ, MLFLOW_TRACKING_URI=""))
    if proc.returncode != 0:
        sys.exit(f"bench_stream_memory.py: the search failed: {proc.stderr[-2000:]}")
    return int(proc.stdout.split()[-1]) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=1024)
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()
    if min(args.samples, args.features, args.trials) < 1:
        parser.exit(2, "bench_stream_memory.py: --samples, --features and --trials must be "
                       ">= 1\n")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"{backend}: peak resident memory of a search over a PyDataset made on the fly "
          f"({args.features} features, {args.trials} trials of 1 epoch)")
    print(f"{'samples':>10}{'as arrays MiB':>15}{'peak MiB':>10}{'ratio':>8}")
    rows = [("", args.samples), (" (control)", args.samples), ("", 10 * args.samples)]
    base = None
    for label, samples in rows:
        peak = peak_mib(samples, args.features, args.trials)
        base = base or peak
        arrays = samples * args.features * 4 / 2**20
        print(f"{samples:>10}{arrays:>15.0f}{peak:>10.0f}{peak / base:>7.2f}x{label}",
              flush=True)


if __name__ == "__main__":
    main()
