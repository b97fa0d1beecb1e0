"""Trials per hour of `keras-relu search` with 1 and 2 workers on this machine, side by side.

    python benchmarks/bench_search_workers.py [--trials 8] [--epochs 3] [--repeats 1]

Each run is a fresh `keras-relu search` process (its own study on the journal default) on
the current KERAS_BACKEND; the sides alternate. Two rates per side: wall clock of the whole
command (process start-up included) and the trials' own span in the study (first trial
start to last trial end). The best of the repeats is reported, and the 2-worker/1-worker
ratio is the scaling factor.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--fix=depth=2", "--fix=width=64", "--pruner=none", "--batch-size=64"]


def one(workers, trials, epochs):
    with tempfile.TemporaryDirectory() as cwd:
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "search.cli", "search", "--workers", str(workers),
                        "--trials", str(trials), "--epochs", str(epochs), *FAST],
                       cwd=cwd, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        import optuna

        from search.engines import optuna as engine

        study = optuna.load_study(study_name="digits", storage=engine.open_storage(
            os.path.join(cwd, engine.DEFAULT_STORAGE)))
        span = (max(t.datetime_complete for t in study.trials) -
                min(t.datetime_start for t in study.trials)).total_seconds()
        return 3600 * trials / wall, 3600 * trials / span


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    best = {1: (0.0, 0.0), 2: (0.0, 0.0)}
    for _ in range(args.repeats):
        for workers in (1, 2):
            rates = one(workers, args.trials, args.epochs)
            best[workers] = tuple(max(a, b) for a, b in zip(best[workers], rates))
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"backend {backend}, {os.cpu_count()} CPUs, {args.trials} trials x {args.epochs} "
          f"epochs, digits, best of {args.repeats}")
    print(f"{'workers':>8}  {'trials/h (wall)':>16}  {'trials/h (trial span)':>22}")
    for workers, (wall, span) in best.items():
        print(f"{workers:>8}  {wall:>16.0f}  {span:>22.0f}")
    print(f"scaling 2 vs 1 worker: {best[2][0] / best[1][0]:.2f}x wall, "
          f"{best[2][1] / best[1][1]:.2f}x trial span")


if __name__ == "__main__":
    main()
