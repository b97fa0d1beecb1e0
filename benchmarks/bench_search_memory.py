"""Resident memory of a long search: RSS after 5, 30 and 100 small trials, per engine.

    python benchmarks/bench_search_memory.py [--backends tensorflow,jax,torch]
        [--engine optuna|kerastuner] [--checkpoints 5,30,100] [--trials-per-process 25]

Each backend runs in its own process: the default space with one 16-unit layer, one
epoch on digits, every trial through the shared trial runner with MLflow tracking
(SQLite in a temporary folder). KerasTuner: the engine in this process, whose RSS
(/proc/self/status VmRSS) is read after each checkpoint trial. Optuna: `search.run`, as
`keras-relu search` runs it, once in one process and once with a fresh worker process
every `--trials-per-process` trials (TensorFlow's default); a thread samples the RSS of
this process and its workers every 0.2 s, and a checkpoint is the last sample of the
process that ran that trial before the trial ended. Growth per trial is the slope
between the first and the last checkpoint. Optuna also gives the launching process's RSS at
the end (the same process as the trials' in the one-process row), the peak of the summed
proportional set sizes of the search's processes (what they take together: the pages of
TensorFlow's libraries count once) and the search's wall time.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from bench_kerastuner_memory import rss_mib, status_mib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(engine_name, checkpoints):
    """Run a KerasTuner search in this process; return {trial count: RSS in MiB}."""
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
    study = engine.open_study("random", "memory", space, "digits", epochs=1)
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


def process_pss(pid):
    """Proportional set size of `pid` in MiB: its private pages plus its share of the pages
    it shares (TensorFlow's libraries, mapped by the launcher and its worker alike)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return next(int(line.split()[1]) / 1024 for line in rollup
                        if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0.0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(p) for p in listing.read().split()]
    except OSError:
        return []


def measure_search(checkpoints, per_process):
    """`search.run` over max(checkpoints) trials, its workers renewed every `per_process`
    trials (more than the trials: all in this process); {trial count: RSS in MiB}."""
    sys.path.insert(0, ROOT)
    import search
    from search.engines.optuna import open_storage

    os.chdir(tempfile.mkdtemp(prefix="bench-mem-"))
    samples, pss, stop = [], [0.0], threading.Event()

    def sample():
        while not stop.wait(0.2):
            now = datetime.datetime.now()
            pids = (os.getpid(), *children(os.getpid()))
            for pid in pids:
                mib = status_mib("VmRSS", pid)
                if mib:
                    samples.append((now, pid, mib))
            pss[0] = max(pss[0], sum(process_pss(pid) for pid in pids))

    threading.Thread(target=sample, daemon=True).start()
    began = time.perf_counter()
    result = search.run(trials=max(checkpoints), epochs=1, batch_size=128,
                        fix=["depth=1", "width=16"], controls=False, progress=False,
                        trials_per_process=per_process,
                        tracking_uri=f"sqlite:///{os.getcwd()}/mlflow.db")
    found = {"seconds": time.perf_counter() - began}
    stop.set()
    found["launcher"] = [mib for _, pid, mib in samples if pid == os.getpid()][-1]
    found["pss"] = pss[0]
    import optuna

    study = optuna.load_study(study_name=result.study_name, storage=open_storage(result.storage))
    ended = sorted((t for t in study.trials if t.datetime_complete),
                   key=lambda t: t.datetime_complete)
    for n in checkpoints:
        trial = ended[n - 1]
        pid = int(trial.user_attrs["worker"].rsplit(":", 1)[1])
        before = [mib for when, p, mib in samples if p == pid and when <= trial.datetime_complete]
        found[str(n)] = before[-1]
        print(f"{n} trials: {before[-1]:.0f} MiB (pid {pid})", file=sys.stderr, flush=True)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--engine", choices=("optuna", "kerastuner"), default="optuna")
    parser.add_argument("--checkpoints", default="5,30,100")
    parser.add_argument("--trials-per-process", type=int, default=25,
                        help="optuna: the renewed row's worker quota")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    checkpoints = sorted({int(n) for n in args.checkpoints.split(",")})
    if args.child:
        per = int(args.child)
        print(json.dumps(measure(args.engine, checkpoints) if args.engine == "kerastuner"
                         else measure_search(checkpoints, per)))
        return 0
    one = max(checkpoints) + 1  # a quota above the trials: one process
    modes = [(one, "one process")]
    if args.engine == "optuna":
        modes.append((args.trials_per_process, f"fresh every {args.trials_per_process}"))
    rows, status = [], 0
    for backend in args.backends.split(","):
        for per, label in modes:
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
            proc = subprocess.run([sys.executable, __file__, "--child", str(per), "--engine",
                                   args.engine, "--checkpoints", args.checkpoints],
                                  env=env, stdout=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                rows.append((backend, label, *["error"] * (len(checkpoints) + 4)))
                status = 1
                continue
            rss = json.loads(proc.stdout.strip().splitlines()[-1])
            first, last = checkpoints[0], checkpoints[-1]
            slope = (rss[str(last)] - rss[str(first)]) / (last - first)
            rows.append((backend, label, *(f"{rss[str(n)]:.0f}" for n in checkpoints),
                         f"{slope * 1024:.0f}", f"{rss.get('launcher', 0):.0f}", f"{rss.get('pss', 0):.0f}",
                         f"{rss.get('seconds', 0):.0f}"))
    header = ("backend", "trials run in", *(f"RSS@{n} MiB" for n in checkpoints),
              "KiB/trial", "launcher MiB", "peak PSS MiB", "search s")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"engine {args.engine}")
    for row in (header, *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return status


if __name__ == "__main__":
    sys.exit(main())
