"""Shared fixtures. The backend is fixed per process by KERAS_BACKEND (see tests/run.py)."""

import os
import signal
import uuid

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The stop tests SIGINT the commands they start, as a user's Ctrl-C would; a suite run as
# a shell's background job inherits SIGINT ignored, and its children would ignore it too.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as keras-relu sets it

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PASSWORD = "s3cret-kr"


def one_pass(backend, what="multi-process scenario"):
    """Each multi-process scenario runs on one backend pass, and each pass runs some: the
    launcher, storages and recovery do not depend on the backend (the workers' training
    does, and every pass starts workers), and these scenarios are CI's slowest tests.
    The same holds for searches that test the engines' and MLflow's bookkeeping (`what`
    says so): a search on each backend is tested in test_search_cli.py and test_api.py."""
    return pytest.mark.skipif(BACKEND != backend, reason=f"{what}: runs on the {backend} pass")


def search_logic(backend):
    """`one_pass` for a search that tests bookkeeping, not the backend's training."""
    return one_pass(backend, "search bookkeeping")


def worker_env():
    """This process's environment for a `keras-relu` subprocess on its backend."""
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=ROOT)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _pg_admin():
    """An autocommit connection to the test server as its superuser, or a skip (a failure
    under KERAS_RELU_REQUIRE_POSTGRES=1, as in CI)."""
    try:
        import psycopg2
    except ImportError as err:
        psycopg2, reason = None, err
    try:
        admin = psycopg2.connect(PG_ADMIN, connect_timeout=3) if psycopg2 else None
    except psycopg2.OperationalError as err:
        admin, reason = None, err
    if admin is None:
        if os.environ.get("KERAS_RELU_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable at {PG_ADMIN}: {reason}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN}: {reason}")
    admin.autocommit = True
    return admin


@pytest.fixture(scope="module")
def pg_database():
    """A fresh database owned by a role with a password; dropped afterwards."""
    admin = _pg_admin()
    name = f"kr_scale_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'kr_user'")
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(f"{verb} ROLE kr_user LOGIN PASSWORD %s", (PASSWORD,))
        cur.execute(f"CREATE DATABASE {name} OWNER kr_user")
    try:
        yield f"postgresql://kr_user:{PASSWORD}@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def pg_new_database():
    """A function that makes an empty database (trust auth, no password) and returns its
    URL; every one is dropped after the test. `tables(url)` lists what it holds."""
    admin, names = _pg_admin(), []

    def make():
        names.append(f"kr_fresh_{uuid.uuid4().hex[:10]}")
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {names[-1]}")
        return f"postgresql://postgres@127.0.0.1:5432/{names[-1]}"

    try:
        yield make
    finally:
        with admin.cursor() as cur:
            for name in names:
                cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def pg_tables(url):
    """The tables of the public schema of the database at `url` (psycopg2), sorted."""
    import psycopg2

    with psycopg2.connect(url, connect_timeout=3) as connection, connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        found = sorted(row[0] for row in cur.fetchall())
    connection.close()
    return found


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.utils.clear_session()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory with MLflow on its default store (./mlruns)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def mlflow_runs(uri, experiment):
    """(client, parent runs, child runs) of `experiment`, read back through MLflow's client."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children
