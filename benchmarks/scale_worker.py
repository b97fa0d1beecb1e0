"""The workers of the scale benchmark: `keras-relu worker` as shipped, with the timers of
`scale_timing` in place; stand-ins replace only the model fit.

    python benchmarks/scale_worker.py serve            # the stand-ins' preloaded parent
    python benchmarks/scale_worker.py real OUT.json -- WORKER ARGS...   # one real worker

`serve` imports Keras, Optuna and MLflow once, then reads one JSON job a line on stdin:
it forks a seed search (`search.run` with one stand-in trial: the study, its stored job,
the MLflow experiment and parent run, made once before any worker) and then N workers, each
running `keras-relu worker` through the CLI's own `main`, and answers one JSON line with
their exit codes and memory (the largest PSS and private memory each child reached).
A stand-in's fit (`search.trial._fit`) sleeps per epoch and hands the trial runner's
recorder and the engine's pruning callback the logs of a 12-layer model (loss, accuracy,
learning rate, the dead/dormant/zero fractions overall and per layer): the child run's
per-epoch MLflow logging, Optuna's pruning reports, ask, tell and the heartbeat all run
as they do in a real worker. What belongs to the fit goes with it: the backend's seeding
(on any backend it starts TensorFlow's runtime, ~130 MiB a process; Python's and NumPy's
generators are seeded instead), the model's logging (a trial that improves the study
records a tag instead of a model artifact) and the plots (none drawn).
"""

import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import scale_timing  # noqa: E402

LAYERS = [f"dense_{i}" for i in range(12)]
FRACTIONS = ("dead_fraction", "dormant_fraction", "zero_fraction")


def epoch_logs(epoch, rng):
    """One epoch's logs shaped like a real 12-layer trial's (44 metrics)."""
    accuracy = min(0.99, 0.5 + 0.08 * epoch + rng.uniform(-0.05, 0.05))
    logs = {"loss": 1.5 / (epoch + 1), "accuracy": accuracy, "val_loss": 1.6 / (epoch + 1),
            "val_accuracy": accuracy - 0.02, "learning_rate": 1e-3,
            "revived": rng.randint(0, 3), "revived_total": rng.randint(0, 9)}
    for key in FRACTIONS:
        per_layer = {f"{key}/{name}": rng.uniform(0, 0.3) for name in LAYERS}
        logs.update(per_layer)
        logs[key] = sum(per_layer.values()) / len(per_layer)
    return logs


class _Watcher:
    """What the trial runner reads of its monitor after a fit: nothing stopped it, no checks
    to plot."""
    stopped_reason, checks = None, []


def install_stand_in(epoch_seconds):
    """Replace the model fit (and the logging of a model that does not exist)."""
    import search.child_run
    import search.trial

    def fit(cures, data, settings, build, recorder, callbacks, run=None, warn_unread=False):
        rng = random.Random()
        for epoch in range(settings.epochs):
            time.sleep(epoch_seconds)
            logs = epoch_logs(epoch, rng)
            recorder.on_epoch_end(epoch, logs)  # the history, and the run's epoch logging
            for callback in callbacks:  # the engine's pruning: report, should_prune
                callback.on_epoch_end(epoch, logs)
        return None, (_Watcher(), None)

    def log_model(run, model, sample):  # no model: the search's end evaluates none
        run.log(tags={"stand_in_model": "not logged"})
        return None

    def seed(value):  # not the backend's: that starts TensorFlow's runtime (~130 MiB)
        import numpy as np
        random.seed(value)
        np.random.seed(value % 2**32)

    search.trial._fit = fit
    search.trial.seed_quietly = seed
    search.child_run.ChildRun.log_model = log_model


def _preload():
    from search import runtime
    runtime.import_keras()
    import mlflow  # noqa: F401
    import optuna  # noqa: F401
    import optuna.storages._rdb.models  # noqa: F401
    import optuna_integration.keras  # noqa: F401
    import psycopg2  # noqa: F401
    import sklearn.datasets  # noqa: F401
    import sqlalchemy.dialects.sqlite  # noqa: F401
    import search.sources  # noqa: F401
    import search.api  # noqa: F401
    import search.cli  # noqa: F401
    import search.parallel.worker  # noqa: F401
    scale_timing.install()


def _child(log, body):
    """Fork; in the child run `body()` with its output in `log`, exit with its code."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = body()
    except BaseException:  # noqa: B036 -- a child never returns into the server's loop
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def memory(pid):
    """(PSS, private) of `pid` in KiB, from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            fields = dict(line.split(":", 1) for line in rollup if ":" in line)
    except OSError:
        return None
    kib = {k: int(v.split()[0]) for k, v in fields.items() if v.strip().endswith("kB")}
    return kib.get("Pss", 0), kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)


def wait_all(pids):
    """Exit codes of `pids`, polling their memory every 0.5 s: {pid: [code, pss, private]}."""
    seen = {pid: [None, 0, 0] for pid in pids}
    while any(v[0] is None for v in seen.values()):
        for pid, entry in seen.items():
            if entry[0] is not None:
                continue
            mem = memory(pid)
            if mem:
                entry[1], entry[2] = max(entry[1], mem[0]), max(entry[2], mem[1])
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                entry[0] = os.waitstatus_to_exitcode(status)
        time.sleep(0.5)
    return seen


def _seed(job):
    import search
    install_stand_in(job["epoch_seconds"])
    search.run(**job["seed"], progress=False)
    return 0


def _worker(job, index):
    from search.cli import main
    install_stand_in(job["epoch_seconds"])
    out = os.path.join(job["out"], f"standin-{index}.json")
    code = 1
    try:
        code = main(["worker", *job["args"]])
    finally:
        scale_timing.dump(out, code=code, pid=os.getpid())
    return code


def serve():
    """Preload once; then per job line: the seed search, N stand-in workers, one answer."""
    import gc
    _preload()
    gc.collect()
    gc.freeze()  # the preloaded objects stay in pages the children share
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        answer = {}
        if job.get("seed"):
            pid = _child(os.path.join(job["out"], "seed.log"), lambda: _seed(job))
            answer["seed_code"] = wait_all([pid])[pid][0]
        if job.get("workers") and answer.get("seed_code", 0) == 0:
            start = time.perf_counter()
            pids = [_child(os.path.join(job["out"], f"standin-{i}.log"),
                           lambda i=i: _worker(job, i)) for i in range(job["workers"])]
            answer["workers"] = list(wait_all(pids).values())
            answer["wall"] = time.perf_counter() - start
            answer["parent_pss_kib"] = (memory(os.getpid()) or (0, 0))[0]
        print(json.dumps(answer), flush=True)


def real(out, args):
    """One real `keras-relu worker` (the CLI's main) with the timers in place."""
    scale_timing.install()
    from search.cli import main
    code = 1
    try:
        code = main(["worker", *args])
    finally:
        scale_timing.dump(out, code=code, pid=os.getpid())
    return code


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    elif sys.argv[1:2] == ["real"] and sys.argv[3:4] == ["--"]:
        sys.exit(real(sys.argv[2], sys.argv[4:]))
    else:
        sys.exit("usage: scale_worker.py serve | real OUT.json -- WORKER ARGS...")
