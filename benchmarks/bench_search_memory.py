"""Resident memory of a long search: RSS after 5, 30 and 100 small trials, per engine.

    python benchmarks/bench_search_memory.py [--backends tensorflow,jax,torch]
        [--engine optuna|kerastuner] [--checkpoints 5,30,100]

Each backend runs in its own process: the default space with one 16-unit layer, one
epoch on digits, every trial through the shared trial runner with MLflow tracking
(SQLite in a temporary folder), as `keras-relu search` does. The process's RSS
(/proc/self/status VmRSS) is read after each checkpoint trial, once the tracker's writes
are done. Growth per trial is the slope between the first and the last checkpoint.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from bench_kerastuner_memory import rss_mib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(engine_name, checkpoints):
    """Run the search in this process; return {trial count: RSS in MiB}."""
    sys.path.insert(0, ROOT)
    import importlib

    from search import data as datasets
    from search.space import default_space
    from search.tracking import Tracker
    from search.trial import TrialSettings

    engine = importlib.import_module(f"search.engines.{engine_name}")
    os.chdir(tempfile.mkdtemp(prefix="bench-mem-"))
    space = default_space().with_cli(["depth=1", "width=16"])
    data = datasets.load("digits")
    if engine_name == "kerastuner":
        study = engine.open_study("random", "memory", space, "digits", epochs=1)
    else:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = engine.open_study("memory", engine.open_storage("journal.log"), "accuracy",
                                  space, "digits", pruner=optuna.pruners.NopPruner())
    tracker = Tracker(f"sqlite:///{os.getcwd()}/mlflow.db", "memory")
    tracker.start_parent({"engine": engine_name}, {"kind": "benchmark"})
    seen = {"n": 0}

    def on_trial(_, record):
        seen["n"] += 1
        if seen["n"] in checkpoints:
            tracker.flush()
            seen[seen["n"]] = rss_mib()
            print(f"{seen['n']} trials: {seen[seen['n']]:.0f} MiB", file=sys.stderr, flush=True)

    engine.optimize(study, space, data, TrialSettings(epochs=1, batch_size=128), tracker,
                    n_trials=max(checkpoints), callbacks=[on_trial])
    tracker.finish_parent("FINISHED")
    return {str(n): seen[n] for n in checkpoints}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--engine", choices=("optuna", "kerastuner"), default="optuna")
    parser.add_argument("--checkpoints", default="5,30,100")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    checkpoints = sorted({int(n) for n in args.checkpoints.split(",")})
    if args.child:
        print(json.dumps(measure(args.engine, checkpoints)))
        return 0
    rows, status = [], 0
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, __file__, "--child", "--engine", args.engine,
                               "--checkpoints", args.checkpoints], env=env,
                              stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            rows.append((backend, *["error"] * (len(checkpoints) + 1)))
            status = 1
            continue
        rss = json.loads(proc.stdout.strip().splitlines()[-1])
        first, last = checkpoints[0], checkpoints[-1]
        slope = (rss[str(last)] - rss[str(first)]) / (last - first)
        rows.append((backend, *(f"{rss[str(n)]:.0f}" for n in checkpoints),
                     f"{slope * 1024:.0f}"))
    header = ("backend", *(f"RSS@{n} MiB" for n in checkpoints), "KiB/trial")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"engine {args.engine}")
    for row in (header, *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return status


if __name__ == "__main__":
    sys.exit(main())
