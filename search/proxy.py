"""`keras-relu storage-proxy`: one study database served to many workers over gRPC.

Optuna's `run_grpc_proxy_server` over its cached storage (`optuna.storages.get_storage`,
as its docs ask) on a pooled `RDBStorage`: the database sees at most `POOL` connections
however many workers join with `--storage grpc://HOST:PORT`. The schema is made (or
checked) once, here, before any worker connects. For a database server only: a journal
file or SQLite is refused (Optuna's proxy does not serve the journal; SQLite is one
machine's file). SIGTERM stops it, exit 0.
"""

import os
import signal
import socket
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

from search import UsageError
from search.names import STORAGE_ENV
from search.secrets import mask_text

POOL = {"pool_size": 5, "max_overflow": 0, "pool_pre_ping": True}  # the database's share
THREADS = 10  # gRPC requests served at once (Optuna's default)


class _Stopped(Exception):
    """SIGTERM: the proxy's end of service."""


def serve(storage=None, host="127.0.0.1", port=13000, out=sys.stdout):
    """Serve the Optuna storage at `storage` (a PostgreSQL/MySQL URL) on `host`:`port`
    until SIGTERM (returns) or Ctrl-C (KeyboardInterrupt)."""
    import optuna

    url = storage or os.environ.get(STORAGE_ENV)
    check_database_url(url)
    check_port_free(host, port)
    from search.engines.optuna_storage import open_database

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        cached = optuna.storages.get_storage(open_database(url, pool=POOL))
    except UsageError:
        raise
    except Exception as err:
        cause = getattr(err, "orig", None) or err
        lines = str(cause).strip().splitlines()
        raise UsageError(f"cannot open storage {mask_text(url)}: "
                         f"{lines[0] if lines else type(err).__name__}") from None

    def stop(signum, frame):
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    print(f"keras-relu storage-proxy: serving {mask_text(url)} on grpc://{host}:{port} "
          f"(workers: --storage grpc://{host}:{port})", file=out, flush=True)
    try:
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.run_grpc_proxy_server(cached, host=host, port=port,
                                              thread_pool=ThreadPoolExecutor(THREADS))
    except _Stopped:
        print(f"keras-relu storage-proxy: grpc://{host}:{port} stopped (SIGTERM)", file=out,
              flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_database_url(url):
    """`UsageError` unless `url` is a database server's SQLAlchemy URL."""
    if not url:
        raise UsageError(f"--storage is required (or ${STORAGE_ENV}): the study database, "
                         "e.g. postgresql://USER@HOST:5432/studies")
    scheme = url.partition(":")[0].partition("+")[0].lower() if "://" in url else ""
    if scheme in ("", "sqlite", "grpc"):
        what = {"": "a journal file", "sqlite": "SQLite", "grpc": "a storage proxy"}[scheme]
        raise UsageError(f"--storage {mask_text(url)} is {what}: the storage proxy serves a "
                         "database server that many machines share (postgresql:// or "
                         "mysql+pymysql://)")


def check_port_free(host, port):
    """`UsageError` if `host`:`port` is taken. A plain bind, as gRPC's own would succeed
    beside another server that set SO_REUSEPORT (gRPC sets it) and split the workers."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
    try:
        probe.bind((host, port))
    except OSError as err:
        raise UsageError(f"cannot listen on {host}:{port}: "
                         f"{(err.strerror or str(err)).lower()}") from None
    finally:
        probe.close()
