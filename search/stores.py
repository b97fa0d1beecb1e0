"""Where studies and runs are stored: database drivers, a fail-fast reachability check,
and safe first creation of a local store.

- `sqlalchemy_url`: SQLAlchemy 2.1 reads `postgresql://` as psycopg 3 and `mysql://` as
  mysqlclient; when only psycopg2 / PyMySQL is installed, name that driver instead. Used
  for the Optuna storage, the MLflow tracking store and `keras-relu ui`.
- `check_tracking_store`: is the MLflow store there, within seconds? One line naming
  what could not be reached (password masked), before any study or run is created.
- `first_use_lock`: two searches started at once in a fresh folder both create MLflow's
  SQLite schema; the second then fails (`table ... already exists`). The lock makes the
  creation one at a time.
"""

import contextlib
import os
import pathlib
import socket
import urllib.error
import urllib.parse
import urllib.request

from search import UsageError
from search.secrets import mask_text

CHECK_TIMEOUT = 5  # seconds to reach a tracking server or database
SQL_SCHEMES = ("postgresql", "mysql", "mssql")


def sqlalchemy_url(url):
    """`url` with the installed driver named where the dialect's default is missing."""
    import importlib.util

    for plain, default, fallback in (("postgresql://", "psycopg", "psycopg2"),
                                     ("mysql://", "MySQLdb", "pymysql")):
        if url.startswith(plain) and importlib.util.find_spec(default) is None \
                and importlib.util.find_spec(fallback) is not None:
            return url.replace(plain, plain[:-3] + "+" + fallback + "://", 1)
    return url


def check_tracking_store(uri, timeout=CHECK_TIMEOUT):
    """Raise `UsageError` in one line if the MLflow store at `uri` cannot be reached
    (a server: any HTTP answer will do; a database: one connection; SQLite: a folder
    that exists or can be made). Creates nothing."""
    scheme = uri.partition(":")[0].partition("+")[0].lower()
    if scheme in ("http", "https"):
        _check_server(uri, timeout)
    elif scheme in SQL_SCHEMES:
        _check_database(uri, timeout)
    elif scheme == "sqlite" and uri.startswith("sqlite:///"):
        _check_sqlite(uri)


def _check_server(uri, timeout):
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host + (f":{parts.port}" if parts.port else "") if host else parts.netloc
    plain = urllib.parse.urlunsplit(parts._replace(netloc=netloc))  # no user:password
    probe = plain.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(probe, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered: reachable (auth or a path it lacks is MLflow's to report)
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        if isinstance(reason, (socket.timeout, TimeoutError)):
            reason = f"no answer in {timeout} s"
        elif isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror.lower()
        raise UsageError(f"cannot reach the MLflow tracking server {mask_text(uri)}: "
                         f"{reason}") from None


def _check_database(uri, timeout):
    import sqlalchemy

    url = sqlalchemy_url(uri)
    args = {"connect_timeout": timeout} if url.startswith(("postgresql", "mysql")) else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as err:
        cause = getattr(err, "orig", None) or err
        lines = [line for line in str(cause).strip().splitlines() if line.strip()]
        raise UsageError(f"cannot reach the MLflow tracking store {mask_text(uri)}: "
                         f"{lines[0].strip() if lines else type(cause).__name__}") from None


def _check_sqlite(uri):
    path = pathlib.Path(uri[len("sqlite:///"):])
    if path.exists():
        return
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create the MLflow store {mask_text(uri)}: "
                         f"{folder} is not a writable folder")


@contextlib.contextmanager
def first_use_lock(uri):
    """Hold an exclusive lock beside a local SQLite store while it is opened (and maybe
    created); elsewhere a no-op (a server or database creates its schema once)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = pathlib.Path(uri[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
