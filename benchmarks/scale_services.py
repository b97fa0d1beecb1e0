"""What the scale benchmark runs beside its workers: fresh PostgreSQL databases, the
`keras-relu storage-proxy`, an `mlflow server` backed by PostgreSQL, and a poller of
`pg_stat_activity` that keeps each database's peak number of connections.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _connect(url):
    import psycopg2
    connection = psycopg2.connect(url, connect_timeout=5)
    connection.autocommit = True
    return connection


def database_name(url):
    return urllib.parse.urlsplit(url).path.lstrip("/")


def _sibling(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


class Databases:
    """The study's database (`--pg-url`, or a fresh one) and a fresh one beside it for the
    MLflow server; the fresh ones are dropped by `close()`."""

    def __init__(self, pg_url=None):
        self.made, self.base = [], pg_url or ADMIN_URL
        self.admin_url = _sibling(self.base, "postgres")
        self.admin = _connect(self.admin_url)
        self.study = pg_url or self.make("kr_bench_" + uuid.uuid4().hex[:8])
        self.mlflow = None

    def make(self, name):
        with self.admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        self.made.append(name)
        return _sibling(self.base, name)

    def mlflow_db(self):
        """A fresh database for the MLflow server's runs (made once)."""
        if self.mlflow is None:
            self.mlflow = self.make(database_name(self.study) + "_mlflow")
        return self.mlflow

    def close(self):
        with self.admin.cursor() as cur:
            for name in self.made:
                cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin.close()


class ConnectionPoller(threading.Thread):
    """Counts the connections to each named database every `every` seconds; `peaks()`
    gives the largest counts seen since the last `reset()`."""

    def __init__(self, admin_url, names, every=0.1):
        super().__init__(daemon=True, name="pg-poller")
        self.connection, self.names, self.every = _connect(admin_url), list(names), every
        self._peaks, self._halt, self._lock = {}, threading.Event(), threading.Lock()
        self.samples = 0

    def run(self):
        with self.connection.cursor() as cur:
            while not self._halt.is_set():
                cur.execute("SELECT datname, count(*) FROM pg_stat_activity WHERE datname = "
                            "ANY(%s) AND pid <> pg_backend_pid() GROUP BY datname",
                            (self.names,))
                with self._lock:
                    self.samples += 1
                    for name, count in cur.fetchall():
                        self._peaks[name] = max(self._peaks.get(name, 0), count)
                self._halt.wait(self.every)

    def reset(self):
        with self._lock:
            self._peaks, self.samples = {}, 0

    def peaks(self):
        with self._lock:
            return {name: self._peaks.get(name, 0) for name in self.names}

    def stop(self):
        self._halt.set()
        self.join(5)
        self.connection.close()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(ready, proc, seconds, what, log):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}); see {log}")
        if ready():
            return
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not start in {seconds} s; see {log}")


def _listening(port):
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _answers(url):
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


class Service:
    """A process in its own group, its output in `log`; `stop()` sends SIGTERM."""

    def __init__(self, argv, log, env=None):
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         env=env or dict(os.environ, PYTHONPATH=ROOT),
                                         start_new_session=True, cwd=os.path.dirname(log))

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_proxy(storage_url, log):
    """`keras-relu storage-proxy` in front of `storage_url`: (service, grpc URL)."""
    port = free_port()
    service = Service([sys.executable, "-m", "search.cli", "storage-proxy", "--storage",
                       storage_url, "--host", "127.0.0.1", "--port", str(port)], log)
    try:
        _wait(lambda: _listening(port), service.proc, 120, "keras-relu storage-proxy", log)
    except BaseException:
        service.stop()
        raise
    return service, f"grpc://127.0.0.1:{port}"


def start_mlflow_server(backend_url, folder, log, workers=2):
    """`mlflow server` with `backend_url` (PostgreSQL) as its store and a local artifact
    root in `folder`: (service, http URL)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    service = Service([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                       backend_url, "--artifacts-destination", f"file://{folder}/artifacts",
                       "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                      log, env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _answers(url), service.proc, 180, "mlflow server", log)
    except BaseException:
        service.stop()
        raise
    return service, url
