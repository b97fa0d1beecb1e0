"""Resident memory over a long KerasTuner search: RSS after 5 and after 30 small trials.

    python benchmarks/bench_kerastuner_memory.py [--backends tensorflow,jax,torch] [--trials 30]

Each backend runs in its own process: RandomSearch over the default space (one small
layer, one epoch on digits), every trial through the shared trial runner with MLflow
tracking (SQLite in a temporary folder), as `keras-relu search --engine kerastuner` does.
The process's RSS (/proc/self/status VmRSS) is read after trial 5 and after the last.
Target: RSS(30) <= 1.2 x RSS(5).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 1.2


def status_mib(field="VmRSS", pid="self"):
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM, ...) in MiB; None once the process
    has gone or exited (a zombie has no memory fields)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status
                        if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def rss_mib():
    return status_mib("VmRSS")


def measure(trials, early):
    """Run the search in this process; return {trial count: RSS in MiB}."""
    sys.path.insert(0, ROOT)
    from search import data as datasets
    from search.engines import kerastuner as engine
    from search.space import default_space
    from search.tracking import Tracker
    from search.trial import TrialSettings

    os.chdir(tempfile.mkdtemp(prefix="bench-kt-"))
    space = default_space().with_cli(["depth=1", "width=16"])
    data = datasets.load("digits")
    study = engine.open_study("random", "memory", space, "digits", epochs=1)
    tracker = Tracker(f"sqlite:///{os.getcwd()}/mlflow.db", "memory")
    tracker.start_parent({"engine": engine.ENGINE}, {"kind": "benchmark"})
    seen = {}

    def on_trial(_, record):
        seen["n"] = seen.get("n", 0) + 1
        if seen["n"] in (early, trials):
            tracker.flush()
            seen[seen["n"]] = rss_mib()

    engine.optimize(study, space, data, TrialSettings(epochs=1, batch_size=128), tracker,
                    n_trials=trials, callbacks=[on_trial])
    tracker.finish_parent("FINISHED")
    return {"early": seen[early], "late": seen[trials]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--early", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.trials, args.early)))
        return 0

    rows, status = [], 0
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "--trials", str(args.trials),
             "--early", str(args.early)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            rows.append((backend, "-", "-", "error"))
            status = 1
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        ratio = result["late"] / result["early"]
        status |= ratio > TARGET
        rows.append((backend, f"{result['early']:.0f}", f"{result['late']:.0f}", f"{ratio:.3f}"))
    header = ("backend", f"RSS@{args.early} MiB", f"RSS@{args.trials} MiB", "ratio")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    print(f"target: ratio <= {TARGET}")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
