"""N workers on one study, the stores measured: trials/min, latencies, connections, invariants.

    python benchmarks/bench_search_scale.py [--workers 8,32,64] [--configs direct,proxy,server]
        [--real 8] [--real-trials 2] [--pg-url URL] [--trials-per-worker 3] [--epochs 5]
        [--epoch-seconds 0.2] [--json PATH]

Each (N, configuration) gets a fresh study, made once by a seed search (one stand-in
trial: the study, the job a worker reads, the MLflow experiment and parent run), then N
stand-in workers: `keras-relu worker` as shipped, forked from one preloaded process, the
model fit replaced by a sleep of `--epoch-seconds` per epoch (see scale_worker.py).
Configurations: `direct` (workers on postgresql://, MLflow in a local SQLite file),
`proxy` (one `keras-relu storage-proxy` in front of the database, workers on grpc://,
MLflow in SQLite) and `server` (workers on postgresql://, MLflow through an
`mlflow server` backed by PostgreSQL). `--real N` also runs N real workers with a tiny
model (direct, `--real-trials` each): their latencies beside the stand-ins' show whether
the stand-in flatters.
The database is `--pg-url` (the bench may create tables in it; a database beside it holds
the MLflow server's runs) or a fresh one on 127.0.0.1:5432 as user postgres, dropped at
the end. Latencies are timed in the workers (scale_timing.py); invariants are read back
from Optuna and MLflow (scale_checks.py); connections are polled in pg_stat_activity
every 100 ms. The 'store ms/trial' is ask + reports + pruning checks + tell + user
attributes + the best-so-far read (wall time in the worker) + every MLflow store call.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIGS = ("direct", "proxy", "server")
FIX = ["depth=1", "width=16"]
NAME = os.path.basename(__file__)


def _fail(message):
    print(f"{NAME}: {message}", file=sys.stderr)
    sys.exit(2)


def _ints(text, flag):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        _fail(f"{flag} takes positive whole numbers separated by commas, not {text!r}")
    return values


def parse(argv=None):
    """The arguments, each checked before any work (one line and exit 2 if wrong)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="8,32,64")
    parser.add_argument("--configs", default="direct,proxy,server")
    parser.add_argument("--real", type=int, default=0, help="also run N real workers")
    parser.add_argument("--real-trials", type=int, default=2, help="trials per real worker")
    parser.add_argument("--pg-url", help="a PostgreSQL database the bench may use")
    parser.add_argument("--trials-per-worker", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--epoch-seconds", type=float, default=0.2)
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args(argv)
    args.workers = _ints(args.workers, "--workers")
    args.configs = args.configs.split(",")
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown or not args.configs:
        _fail(f"unknown configuration(s) {', '.join(unknown)}; valid: {', '.join(CONFIGS)}")
    if args.real < 0 or min(args.trials_per_worker, args.real_trials, args.epochs) < 1:
        _fail("--real must be >= 0, --trials-per-worker, --real-trials and --epochs >= 1")
    if not args.epoch_seconds > 0:
        _fail("--epoch-seconds must be > 0")
    if args.pg_url and not args.pg_url.startswith(("postgresql://", "postgresql+psycopg2://")):
        _fail(f"--pg-url must be a postgresql:// URL, not {args.pg_url!r}")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        _fail(f"--json: no folder {os.path.dirname(os.path.abspath(args.json))}")
    if "proxy" in args.configs:
        sys.path.insert(0, ROOT)
        from search.cli_parsers import build_parser
        if "storage-proxy" not in build_parser()._subparsers._group_actions[0].choices:
            _fail("the proxy configuration needs `keras-relu storage-proxy`, which this "
                  "version lacks; run --configs direct,server")
    return args


class Bench:
    """The databases, the poller, the stand-ins' preloaded server and the MLflow server."""

    def __init__(self, args):
        sys.path.insert(0, HERE)
        sys.path.insert(0, ROOT)
        import scale_services

        self.args, self.services = args, scale_services
        self.folder = tempfile.mkdtemp(prefix="bench-scale-")
        self.dbs = scale_services.Databases(args.pg_url)
        self.names = [scale_services.database_name(self.dbs.study)]
        if "server" in args.configs:
            self.names.append(scale_services.database_name(self.dbs.mlflow_db()))
        self.poller = scale_services.ConnectionPoller(self.dbs.admin_url, self.names)
        self.poller.start()
        self.mlflow = None
        self.server = subprocess.Popen([sys.executable, os.path.join(HERE, "scale_worker.py"),
                                        "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       env=self.env(), text=True, cwd=self.folder)
        if not json.loads(self.server.stdout.readline() or "{}").get("ready"):
            raise RuntimeError("the stand-ins' preloaded process did not start")

    def env(self):
        env = dict(os.environ, PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS="1",
                   TF_CPP_MIN_LOG_LEVEL="3")
        env.pop("MLFLOW_TRACKING_URI", None)
        return env

    def job(self, **job):
        self.server.stdin.write(json.dumps(job) + "\n")
        self.server.stdin.flush()
        return json.loads(self.server.stdout.readline())

    def tracking(self, config, folder):
        if config != "server":
            return f"sqlite:///{folder}/mlflow.db"
        if self.mlflow is None:
            from search.stores import sqlalchemy_url
            self.mlflow = self.services.start_mlflow_server(
                sqlalchemy_url(self.dbs.mlflow_db()), self.folder, os.path.join(self.folder, "mlflow.log"))
        return self.mlflow[1]

    def run(self, n, config, real=False):
        """One row: a fresh study, N workers (stand-ins or real), the figures."""
        a = self.args
        kind = "real" if real else "stand-in"
        folder = os.path.join(self.folder, f"{config}-{n}-{kind}")
        os.makedirs(folder)
        study = f"scale-{config}-{n}-{kind}-{uuid.uuid4().hex[:4]}"
        tracking = self.tracking(config, folder)
        seed = {"study_name": study, "storage": self.dbs.study, "tracking_uri": tracking,
                "trials": 1, "epochs": a.epochs, "batch_size": 128, "fix": FIX,
                "controls": False}
        trials = a.real_trials if real else a.trials_per_worker
        if self.job(out=folder, seed=seed, epoch_seconds=0.01).get("seed_code") != 0:  # setup
            raise RuntimeError(f"the seed search failed; see {folder}/seed.log")
        storage, proxy = self.dbs.study, None
        if config == "proxy":
            proxy, storage = self.services.start_proxy(self.dbs.study,
                                                       os.path.join(folder, "proxy.log"))
        args = ["--study-name", study, "--storage", storage, "--tracking-uri", tracking,
                "--trials", str(trials), "--quiet"]
        self.poller.reset()
        try:
            answer = (self._real(n, folder, args) if real else
                      self.job(out=folder, workers=n, epoch_seconds=a.epoch_seconds, args=args))
        finally:
            peaks = self.poller.peaks()
            if proxy:
                proxy.stop()
        return self._figures(n, config, kind, study, tracking, folder, answer, peaks, trials)

    def _real(self, n, folder, args):
        from scale_worker import memory, wait_all

        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "scale_worker.py"), "real",
                                   os.path.join(folder, f"real-{i}.json"), "--", *args],
                                  stdout=open(os.path.join(folder, f"real-{i}.log"), "w"),
                                  stderr=subprocess.STDOUT, env=self.env(), cwd=folder)
                 for i in range(n)]
        workers = list(wait_all([p.pid for p in procs]).values())
        return {"workers": workers, "wall": time.perf_counter() - start,
                "parent_pss_kib": (memory(os.getpid()) or (0, 0))[0]}

    def _figures(self, n, config, kind, study_name, tracking, folder, answer, peaks, trials):
        import optuna
        import scale_checks as checks
        from search.stores import sqlalchemy_url

        study = optuna.load_study(study_name=study_name, storage=optuna.storages.RDBStorage(
            sqlalchemy_url(self.dbs.study)))
        dumps = checks.load_dumps(folder, "real-" if kind == "real" else "standin-")
        asked = [number for dump in dumps for number in dump["asked"]]
        codes = [w[0] for w in answer["workers"]]
        stats = checks.latencies(dumps)
        pss = sorted(w[1] for w in answer["workers"])
        private = sorted(w[2] for w in answer["workers"])
        return {
            "workers": n, "config": config, "kind": kind, "study": study_name,
            "trials_per_min": checks.throughput(study)[0], "span_s": checks.throughput(study)[1],
            "wall_s": answer["wall"], "latency_ms": stats,
            "per_trial": checks.per_trial(stats, dumps, len(asked)),
            "connections": dict(zip(("study_db", "mlflow_db"), peaks.values())),
            "errors": checks.errors(dumps, codes),
            "trials": checks.check_trials(study, asked, 1 + n * trials),
            "runs": checks.check_runs(study, tracking),
            "memory_kib": {"pss_median": pss[len(pss) // 2], "private_median":
                           private[len(private) // 2], "pss_sum": sum(pss),
                           "parent_pss": answer.get("parent_pss_kib", 0)},
        }

    def close(self, keep=False):
        """Stop everything; `keep`: leave the logs (their folder is printed)."""
        self.server.stdin.close()
        self.server.wait(60)
        if self.mlflow:
            self.mlflow[0].stop()
        self.poller.stop()
        self.dbs.close()
        if keep:
            print(f"{NAME}: logs kept in {self.folder}", file=sys.stderr)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)


def main(argv=None):
    args = parse(argv)
    bench, rows = Bench(args), []
    try:
        plan = [(n, c, False) for n in args.workers for c in args.configs]
        if args.real:
            plan.append((args.real, "direct", True))
        for n, config, real in plan:
            try:
                rows.append(bench.run(n, config, real))
            except Exception as err:  # one row fails, the others still run
                rows.append({"workers": n, "config": config,
                             "kind": "real" if real else "stand-in", "error": str(err)})
            print(f"{NAME}: done N={n} {config}{' real' if real else ''}", file=sys.stderr,
                  flush=True)
    finally:
        bench.close(keep=os.environ.get("BENCH_KEEP") == "1" or any("error" in r for r in rows))
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"{time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} CPUs, backend "
          f"{backend}, {args.trials_per_worker} trials/worker x {args.epochs} epochs of "
          f"{args.epoch_seconds} s (stand-ins)")
    from scale_report import notes, table
    print(table(rows))
    print(notes(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"args": {k: v for k, v in vars(args).items() if k != "pg_url"},
                       "rows": rows}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
