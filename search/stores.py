"""Where studies and runs are stored: database drivers, a fail-fast reachability check,
and safe first creation of a local store.

- `sqlalchemy_url`: SQLAlchemy 2.1 reads `postgresql://` as psycopg 3 and `mysql://` as
  mysqlclient; when only psycopg2 / PyMySQL is installed, name that driver instead. Used
  for the Optuna storage, the MLflow tracking store and `keras-relu ui`.
- `check_tracking_store`: is the MLflow store there, within seconds? One line naming
  what could not be reached (password masked), before any study or run is created.
- `proxy_address`, `check_proxy`: a `grpc://HOST:PORT` study storage (a `keras-relu
  storage-proxy`): a port that answers, then a gRPC handshake, within seconds.
- `first_use_lock`: two searches started at once in a fresh folder both create MLflow's
  SQLite schema; the second then fails (`table ... already exists`). The lock makes the
  creation one at a time.
"""

import base64
import contextlib
import json
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
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
SCHEMA_LOCK_KEY = 0x6B72656C75  # "krelu": one advisory lock per database for both schemas
TABLES = {"optuna": {"studies", "trials", "version_info"},
          "mlflow": {"experiments", "runs", "metrics"}}
PROXY_TIMEOUT = 3  # seconds for a storage proxy's gRPC handshake
MLFLOW_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"  # what a server must answer


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
    (a server: an answer of MLflow's API; a database: one connection; SQLite: a folder
    that exists or can be made). Creates nothing."""
    scheme = uri.partition(":")[0].partition("+")[0].lower()
    if scheme in ("http", "https"):
        _check_server(uri, timeout)
    elif scheme in SQL_SCHEMES:
        _check_database(uri, timeout)
    elif scheme == "sqlite" and uri.startswith("sqlite:///"):
        _check_sqlite(uri)


def _check_server(uri, timeout):
    """Ask the MLflow API itself (search one experiment): any web server answers
    /health, and a search that went on to a mere web server failed after making its
    study."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host + (f":{parts.port}" if parts.port else "") if host else parts.netloc
    plain = urllib.parse.urlunsplit(parts._replace(netloc=netloc))  # no user:password
    probe = urllib.request.Request(plain.rstrip("/") + MLFLOW_PROBE, headers=_auth(parts))
    shown = f"the MLflow tracking server {mask_text(uri)}"
    try:
        with urllib.request.urlopen(probe, timeout=timeout) as answer:
            body = answer.read(1 << 20)
    except urllib.error.HTTPError as err:
        what = ("refused the credentials" if err.code in (401, 403) else
                "is not an MLflow tracking server" if err.code in (404, 405) else "failed")
        raise UsageError(f"{shown} {what} (HTTP {err.code} {err.reason} for "
                         f"{MLFLOW_PROBE.partition('?')[0]})") from None
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        if isinstance(reason, (socket.timeout, TimeoutError)):
            reason = f"no answer in {timeout} s"
        elif isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror.lower()
        raise UsageError(f"cannot reach {shown}: {reason}") from None
    try:
        json.loads(body or b"{}")
    except ValueError:
        raise UsageError(f"{shown} is not an MLflow tracking server (no JSON from "
                         f"{MLFLOW_PROBE.partition('?')[0]})") from None


def _auth(parts):
    """The headers MLflow's client would send: basic auth from the URL or from
    MLFLOW_TRACKING_USERNAME/PASSWORD, else a bearer MLFLOW_TRACKING_TOKEN."""
    user = urllib.parse.unquote(parts.username or os.environ.get("MLFLOW_TRACKING_USERNAME", ""))
    password = urllib.parse.unquote(parts.password or
                                    os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    if user or password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode())
                .decode()}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _check_database(uri, timeout):
    import sqlalchemy

    url = sqlalchemy_url(uri)
    args = {"connect_timeout": timeout} if url.startswith(("postgresql", "mysql")) else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as err:
        cause = getattr(err, "orig", None) or err
        lines = [line for line in str(cause).strip().splitlines() if line.strip()]
        raise UsageError(f"cannot reach the MLflow tracking store {mask_text(uri)}: "
                         f"{lines[0].strip() if lines else type(cause).__name__}") from None
    check_schema_owner(uri, "mlflow")


def proxy_address(url):
    """(host, port) of a `grpc://HOST:PORT` storage URL; `UsageError` if it names none."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or not port or parts.path not in ("", "/"):
        raise UsageError(f"--storage {mask_text(url)}: a storage proxy is grpc://HOST:PORT "
                         "(keras-relu storage-proxy serves one)")
    return parts.hostname, port


def check_proxy(url, timeout=PROXY_TIMEOUT):
    """Raise `UsageError` in one line unless a gRPC server answers at `url`
    (`grpc://HOST:PORT`): a closed port in milliseconds, a silent one in `timeout` s."""
    import grpc

    host, port = proxy_address(url)
    shown = f"the storage proxy {url}"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        reason = f"no answer in {timeout} s" if isinstance(err, TimeoutError) else \
            (err.strerror or str(err)).lower()
        raise UsageError(f"cannot reach {shown}: {reason} (is keras-relu storage-proxy "
                         "running there?)") from None
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise UsageError(f"{shown} does not speak gRPC (no handshake in {timeout} s)") from None
    finally:
        channel.close()


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
    """Make (or open) the store at `uri` one process at a time: two first searches at
    once would both create its schema, and one of them fail (`table ... already exists`,
    `duplicate key value violates unique constraint "pg_type_typname_nsp_index"`). An
    exclusive lock beside a local SQLite file; on PostgreSQL an advisory lock, on MySQL
    a named lock, held on a connection of its own; elsewhere nothing (a journal file,
    a tracking server: they make their own)."""
    scheme = uri.partition(":")[0].partition("+")[0].lower()
    if uri.startswith("sqlite:///"):
        with _file_lock(pathlib.Path(uri[len("sqlite:///"):])):
            yield
    elif scheme in ("postgresql", "mysql"):
        with _database_lock(uri, scheme):
            yield
    else:
        yield


@contextlib.contextmanager
def _file_lock(path):
    import fcntl

    if not path.parent.is_dir():  # opening the store will say so
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _database_lock(uri, scheme):
    import sqlalchemy

    take, give = {"postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
                  "mysql": ("SELECT GET_LOCK(:name, 600)", "SELECT RELEASE_LOCK(:name)")}[scheme]
    engine = sqlalchemy.create_engine(sqlalchemy_url(uri), poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={"connect_timeout": CHECK_TIMEOUT})
    names = {"key": SCHEMA_LOCK_KEY, "name": "keras-relu schema"}
    try:
        with engine.connect() as connection:  # closing it frees the lock, whatever happens
            connection.execute(sqlalchemy.text(take), names)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    connection.execute(sqlalchemy.text(give), names)
    finally:
        engine.dispose()


def check_separate(storage, tracking_uri):
    """Raise `UsageError` if the Optuna storage and the MLflow store are one database:
    both keep their schema version in an `alembic_version` table, and whichever comes
    second fails (`Can't locate revision`) after making its tables."""
    if not storage or "://" not in storage:
        return
    first, second = _database(storage), _database(tracking_uri)
    if first and second and first[0] == second[0] and first[2:] == second[2:] \
            and (first[1] & second[1] or first[1] == second[1]):  # a host address in common
        raise UsageError(f"--storage {mask_text(storage)} and the MLflow tracking store "
                         f"{mask_text(tracking_uri)} are one database; the study and the runs "
                         "need two (e.g. .../optuna and .../mlflow)")


def _database(url):
    """(dialect, addresses, port, database) of a SQLAlchemy URL, or None."""
    import sqlalchemy

    try:
        parts = sqlalchemy.engine.make_url(url)
    except Exception:
        return None
    dialect = parts.get_backend_name()
    if dialect not in SQL_SCHEMES:
        return None
    host = parts.host or ""
    try:
        addresses = frozenset(info[4][0] for info in socket.getaddrinfo(host, None)) if host \
            else frozenset()
    except OSError:
        addresses = frozenset({host.lower()})
    return dialect, addresses, parts.port or DEFAULT_PORTS.get(dialect), parts.database


def check_schema_owner(url, wanted):
    """Raise `UsageError` if the database at `url` holds the other program's tables
    (`wanted`: "optuna" or "mlflow" is to be there): one database for both stores."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(sqlalchemy_url(url), poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={"connect_timeout": CHECK_TIMEOUT})
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    other = "mlflow" if wanted == "optuna" else "optuna"
    if TABLES[other] <= tables and not TABLES[wanted] <= tables:
        holds = "an MLflow tracking store" if other == "mlflow" else "an Optuna study storage"
        raise UsageError(f"{mask_text(url)} holds {holds}; the study and the runs need two "
                         "databases")
