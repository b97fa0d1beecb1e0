"""`keras-relu ui`: the MLflow UI over the store `keras-relu search` writes.

The server is `mlflow server` in a child process, bound to 127.0.0.1 unless told
otherwise, with one worker (2-core machines) and no job runner. The store URI reaches it
through the environment, never its command line. The port and the store are checked
before anything starts; the URL is printed as soon as the server answers.
"""

import errno
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from search import UsageError
from search.stores import check_tracking_store
from search.secrets import mask_text
from search.tracking import MLRUNS, default_tracking_uri, resolve_tracking_uri

READY_TIMEOUT = 120  # seconds for the server to answer /health


def check_port_free(host, port):
    """Raise UsageError if `host:port` cannot be bound (something listens there)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise UsageError(f"cannot resolve host {host!r}: {err.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is already in use; "
                                 "choose another with --port") from None
            raise UsageError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def artifact_root(uri):
    """Where the server puts artifacts of experiments made in the UI: the folder that
    `search` uses for the default store (./mlruns/artifacts), else beside a SQLite file."""
    if uri == default_tracking_uri():
        return (pathlib.Path(MLRUNS).resolve() / "artifacts").as_uri()
    if uri.startswith("sqlite:///"):
        return (pathlib.Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts").as_uri()
    return (pathlib.Path("mlartifacts").resolve()).as_uri()


def server_command(uri, host, port):
    """`mlflow server` without the store URI, which `server_env` passes (argv is in `ps`)."""
    root = artifact_root(uri)
    return [sys.executable, "-m", "mlflow", "server",
            "--default-artifact-root", root, "--artifacts-destination", root,
            "--host", host, "--port", str(port), "--workers", "1"]


def server_env(uri):
    """The server's environment: the store (its password, if any, stays out of `ps`),
    with the installed database driver, and no job runner (MLflow's GenAI job queue:
    a second process importing MLflow that made start-up 2.5x slower on 2 cores)."""
    from search.stores import sqlalchemy_url

    return dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_BACKEND_STORE_URI=sqlalchemy_url(uri),
                MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")


def url_for(host, port):
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _wait_ready(proc, url, timeout=READY_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def serve(tracking_uri=None, host="127.0.0.1", port=5000, out=sys.stdout):
    """Run the MLflow UI until interrupted; returns the server's exit status."""
    uri = resolve_tracking_uri(tracking_uri)
    check_port_free(host, port)
    if uri.startswith(("http://", "https://")):
        raise UsageError(f"{mask_text(uri)} is already a tracking server: open it in a browser")
    if uri.startswith("sqlite:///") and not pathlib.Path(uri[len("sqlite:///"):]).exists():
        raise UsageError(f"no MLflow store at {mask_text(uri)} yet: run `keras-relu search` "
                         "first, or pass --tracking-uri")
    check_tracking_store(uri)  # a database that does not answer: one line, in seconds
    env = server_env(uri)
    # Its own process group: `mlflow server` starts uvicorn as a grandchild, and the
    # whole group is stopped when this command ends (Ctrl-C, SIGTERM or an error).
    proc = subprocess.Popen(server_command(uri, host, port), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    previous = signal.signal(signal.SIGTERM, _terminated)
    url = url_for(host, port)
    try:
        if not _wait_ready(proc, url):
            _stop(proc)
            lines = (proc.communicate(timeout=10)[1] or "").strip().splitlines()
            raise RuntimeError(f"mlflow server did not start: {lines[-1] if lines else 'no answer'}")
        print(f"MLflow UI: {url}  (store {mask_text(uri)}; Ctrl-C stops it)", file=out, flush=True)
        for line in proc.stderr:  # the server's log, passed on (so its pipe never fills)
            sys.stderr.write(line)
        code = proc.wait()
        if code != 0:
            raise RuntimeError(f"mlflow server stopped with exit status {code}")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(proc)


def _terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends `keras-relu ui` like Ctrl-C


def _stop(proc):
    """SIGTERM to the server's process group, SIGKILL if any of it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + 5
        try:
            os.killpg(proc.pid, sig)
            while time.monotonic() < deadline:
                proc.poll()  # reap the child so the group can empty
                os.killpg(proc.pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            return
