"""Peak PostgreSQL connections of N workers on one study: direct RDB vs a storage proxy.

    python benchmarks/bench_proxy_connections.py [--workers 4,8] [--seconds 20]
        [--admin postgresql://postgres@127.0.0.1:5432/postgres]

Each worker is a process that opens the study storage as `keras-relu worker` does
(`search.engines.optuna_storage.open_storage`: the pooled RDBStorage with Optuna's
heartbeat, or `grpc://` through `keras-relu storage-proxy` with `ProxyHeartbeat`) and runs
trials of 0.2 s (ask, 3 reports, tell) for `--seconds`. The peak of
`SELECT count(*) FROM pg_stat_activity WHERE datname = ...`, sampled every 0.1 s, is the
figure; a fresh database per run.
"""

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = """
import sys, time, optuna
from search.engines import optuna as engine
from search.engines.optuna_heartbeat import ProxyHeartbeat, optimize_with
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = engine.open_storage(sys.argv[1])
study = optuna.load_study(study_name="connections", storage=storage)
beat = ProxyHeartbeat(study) if engine.is_proxy(storage) else None
def objective(trial):
    if beat:
        beat.beat(trial)
    x = trial.suggest_float("x", 0, 1)
    for step in range(3):
        time.sleep(0.2 / 3)
        trial.report(x, step)
    if beat:
        beat.rest()
    return x
optimize_with(study, objective, beat, [], timeout=float(sys.argv[2]))
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connections(admin, name):
    with admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,))
        return cur.fetchone()[0]


def measure(admin, admin_url, workers, seconds, proxied):
    """Peak connections to a fresh database while `workers` processes run trials."""
    import optuna

    name = f"kr_conn_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs, proxy = [], None
    try:
        from search.engines import optuna as engine

        storage = engine.open_storage(url)
        optuna.create_study(study_name="connections", storage=storage)
        storage.engine.dispose()
        target = url
        if proxied:
            port = free_port()
            proxy = subprocess.Popen([sys.executable, "-m", "search.cli", "storage-proxy",
                                      "--storage", url, "--port", str(port)], env=env,
                                     stdout=subprocess.PIPE, text=True)
            proxy.stdout.readline()  # "serving ..."
            target = f"grpc://127.0.0.1:{port}"
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, target, str(seconds)], env=env)
                 for _ in range(workers)]
        peak = 0
        while any(p.poll() is None for p in procs):
            peak = max(peak, connections(admin, name))
            time.sleep(0.1)
        bad = [p.returncode for p in procs if p.returncode]
        done = len(optuna.load_study(study_name="connections",
                                    storage=engine.open_storage(url)).trials)
        return peak, done, bad
    finally:
        for proc in procs + ([proxy] if proxy else []):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="4,8")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    import psycopg2

    admin = psycopg2.connect(args.admin, connect_timeout=5)
    admin.autocommit = True
    print("| workers | storage | peak connections | trials | failed workers |")
    print("|---|---|---|---|---|")
    for n in (int(w) for w in args.workers.split(",")):
        for proxied in (False, True):
            peak, done, bad = measure(admin, args.admin, n, args.seconds, proxied)
            print(f"| {n} | {'grpc:// proxy' if proxied else 'direct RDB'} | {peak} | {done} "
                  f"| {len(bad)} |", flush=True)


if __name__ == "__main__":
    main()
