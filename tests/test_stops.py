"""Issue #14 with real processes and signals: SIGTERM and SIGKILL of a plain search and its
resume, a worker that dies with no launcher watching (PostgreSQL heartbeat), two first
searches at once, KerasTuner's counts, and no password on screen or in `ps` (an MLflow
server with a password in its URL; `keras-relu ui` on PostgreSQL).

Each scenario runs on one backend pass (see `one_pass` in test_search_scale.py).
"""

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import optuna
import pytest
from mlflow import MlflowClient
from conftest import PASSWORD, one_pass, worker_env

from search.engines import optuna as engine

FAST = ["--fix=depth=1", "--fix=width=16", "--batch-size=128", "--pruner=none"]
State = optuna.trial.TrialState


def start(args, cwd, env=None, command="search"):
    return subprocess.Popen([sys.executable, "-m", "search.cli", command, *args], cwd=cwd,
                            env={**worker_env(), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def descendants(root):
    """{pid: command line} of every process below `root` (its own has what the user typed)."""
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                parents[int(pid)] = int(handle.read().rpartition(")")[2].split()[1])
        except OSError:
            pass
    found, frontier = [], {root}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier}
        found += frontier
    lines = {}
    for pid in found:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                line = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if line:  # empty once the process has exited
            lines[pid] = line
    return lines


class CommandLines(threading.Thread):
    """Every command line under `proc` by pid (a launcher's workers share one), polled until
    it exits."""

    def __init__(self, proc):
        super().__init__(daemon=True)
        self.proc, self.by_pid = proc, {}
        self.start()

    def run(self):
        while self.proc.poll() is None:
            self.by_pid.update(descendants(self.proc.pid))
            time.sleep(0.2)

    @property
    def seen(self):
        return list(self.by_pid.values())


def runs(cwd, experiment, uri=None):
    client = MlflowClient(uri or f"sqlite:///{cwd}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], max_results=1000)
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return children, [r for r in found if "mlflow.parentRunId" not in r.data.tags]


def wait_for(predicate, proc=None, timeout=240, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert proc is None or proc.poll() is None, f"the process ended before {what}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def trials(storage, name):
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    except KeyError:
        return []


def trained_an_epoch(storage, name, state=State.RUNNING):
    return [t for t in trials(storage, name) if t.state == state and t.intermediate_values]


@one_pass("tensorflow")
def test_sigterm_then_sigkill_then_a_resume_that_closes_what_was_left_item_3(tmp_path):
    storage = engine.open_storage(str(tmp_path / engine.DEFAULT_STORAGE))
    args = ["--trials", "2", "--epochs", "10", *FAST]  # signals land mid-trial
    proc = start(args, tmp_path)
    wait_for(lambda: trained_an_epoch(storage, "digits"), proc, what="an epoch")
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code in (130, 143), err[-2000:]
    (stopped,) = trials(storage, "digits")
    assert stopped.state == State.FAIL and "interrupted" in stopped.user_attrs["reason"]
    children, parents = runs(tmp_path, "digits")
    assert [r.info.status for r in children + parents] == ["KILLED", "KILLED"]

    proc = start(args, tmp_path)
    killed = wait_for(lambda: trained_an_epoch(storage, "digits"), proc, what="an epoch")[0]
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert trials(storage, "digits")[killed.number].state == State.RUNNING  # nothing closed it
    code, out, err = finish(start(["--trials", "1", "--epochs", "10", *FAST], tmp_path))
    assert code == 0, err[-2000:]
    assert "closed 3 trial(s) and run(s) left RUNNING by a process that died" in err
    dead = trials(storage, "digits")[killed.number]
    assert dead.state == State.FAIL and "died" in dead.user_attrs["reason"]
    children, parents = runs(tmp_path, "digits")
    status = {r.data.tags["trial_number"]: r.info.status for r in children}
    assert status == {"0": "KILLED", str(killed.number): "FAILED", "2": "FINISHED"}
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED", "KILLED"]
    assert all(t.state != State.RUNNING for t in trials(storage, "digits"))


@one_pass("tensorflow")
def test_a_worker_dying_with_no_launcher_watching_has_its_run_closed_item_4(tmp_path,
                                                                          pg_new_database):
    # A database of its own: this module's `pg_database` is a tracking store in item 8.
    pg_database, name = pg_new_database(), f"alone-{uuid.uuid4().hex[:6]}"
    code, out, err = finish(start(["--workers", "2", "--trials", "1", "--epochs", "10",
                                   "--study-name", name, "--storage", pg_database, *FAST],
                                  tmp_path))
    assert code == 0, err[-2000:]
    storage = engine.open_storage(pg_database)
    worker_env = {"KERAS_RELU_STORAGE": pg_database}
    lone = start(["--study-name", name, "--trials", "1"], tmp_path, worker_env, "worker")
    (attempt,) = wait_for(lambda: trained_an_epoch(storage, name), lone, what="an epoch")
    lone.send_signal(signal.SIGKILL)  # as if its machine went away: no launcher sees it
    finish(lone)
    children, _ = runs(tmp_path, name)
    assert [r.info.status for r in children if r.data.tags["trial_number"] ==
            str(attempt.number)] == ["RUNNING"]
    time.sleep(engine.HEARTBEAT["grace_period"] + 2)  # its heartbeat is stale by now
    code, out, err = finish(start(["--study-name", name, "--trials", "1"], tmp_path,
                                  worker_env, "worker"))
    assert code == 0, err[-2000:]
    ended = trials(storage, name)
    assert ended[attempt.number].state == State.FAIL
    retry = [t for t in ended if t.system_attrs.get("failed_trial") == attempt.number]
    assert len(retry) == 1 and retry[0].state == State.COMPLETE
    children, _ = runs(tmp_path, name)
    status = {r.data.tags["trial_number"]: r for r in children}
    assert status[str(attempt.number)].info.status == "FAILED"
    assert "heartbeat" in status[str(attempt.number)].data.tags["reason"]
    assert status[str(retry[0].number)].info.status == "FINISHED"
    assert not [r for r in children if r.info.status == "RUNNING"]


@one_pass("jax")
def test_two_first_searches_at_the_same_moment_both_succeed_item_5(tmp_path):
    args = ["--trials", "1", "--epochs", "1", *FAST]
    procs = [start(args, tmp_path), start(args, tmp_path)]
    results = [finish(p) for p in procs]
    assert [code for code, _, _ in results] == [0, 0], [err[-1500:] for _, _, err in results]
    storage = engine.open_storage(str(tmp_path / engine.DEFAULT_STORAGE))
    assert [t.state for t in trials(storage, "digits")] == [State.COMPLETE] * 2
    children, parents = runs(tmp_path, "digits")
    assert [r.info.status for r in parents] == ["FINISHED"] * 2 and len(children) == 2


def start_mlflow_server(folder, port=None):
    """A real `mlflow server` over SQLite in `folder`, on `port` (None: a free one), in its
    own process group: (its process, its URL, no password)."""
    from search.parallel.kerastuner import free_port

    port = port or free_port()
    folder.mkdir(exist_ok=True)
    env = {**worker_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{folder}/mlflow.db", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "1"], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), proc, 180, "the MLflow server")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, url


@pytest.fixture
def mlflow_server(tmp_path):
    """`start_mlflow_server` for one test: its URL."""
    proc, url = start_mlflow_server(tmp_path / "server")
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _answers(url):
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@one_pass("tensorflow")
def test_a_password_in_an_http_tracking_uri_is_never_shown_item_1(tmp_path, mlflow_server):
    secret = "bob:secretpw@"
    uri = mlflow_server.replace("http://", f"http://{secret}")
    proc = start(["--workers", "2", "--trials", "2", "--epochs", "1", "--tracking-uri", uri,
                  *FAST], tmp_path)
    lines = CommandLines(proc)
    code, out, err = finish(proc)
    lines.join(5)
    assert code == 0, err[-2000:]
    workers = [cmd for cmd in lines.seen if " worker " in cmd]
    assert len(workers) >= 2, lines.seen  # its two workers were seen
    shown = [text for text in [out, err, *lines.seen] if "secretpw" in text]
    assert not shown, shown[0][-500:]
    assert "http://bob:***@127.0.0.1" in out  # where the runs are, masked
    children, parents = runs(tmp_path, "digits", mlflow_server)
    assert [r.info.status for r in parents] == ["FINISHED"] and len(children) == 2


@one_pass("jax")
def test_ui_on_postgresql_keeps_the_password_out_of_ps_item_2_and_8(tmp_path, pg_database):
    from search.parallel.kerastuner import free_port

    port = free_port()
    proc = start(["--port", str(port), "--tracking-uri", pg_database], tmp_path, command="ui")
    lines = CommandLines(proc)
    try:
        started = time.monotonic()
        line = wait_for(lambda: proc.stdout.readline(), proc, 240, "the UI's URL")
        assert line.startswith(f"MLflow UI: http://127.0.0.1:{port}"), line
        print(f"\nkeras-relu ui on PostgreSQL answered after {time.monotonic() - started:.1f} s")
        assert _answers(f"http://127.0.0.1:{port}")
        time.sleep(1)  # one more look at every process
        assert any("mlflow" in cmd for cmd in lines.seen)  # mlflow server, uvicorn
        assert not [cmd for cmd in lines.seen if PASSWORD in cmd]
        assert PASSWORD not in line
    finally:
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc, 120)
    assert PASSWORD not in out + err


def _kerastuner_runs(cwd, status=None):
    try:
        children, parents = runs(cwd, "digits")
    except (AttributeError, Exception):  # no store or experiment yet
        return []
    return [r for r in children if status is None or r.info.status == status]


@one_pass("jax")
def test_kerastuner_counts_what_this_invocation_ran_item_6(tmp_path):
    # 68 batches per epoch: the second trial still trains when the SIGINT lands
    args = ["--engine", "kerastuner", "--epochs", "4", "--fix=depth=1", "--fix=width=16",
            "--batch-size=16"]
    proc = start([*args, "--trials", "3"], tmp_path)
    wait_for(lambda: [r for r in _kerastuner_runs(tmp_path, "RUNNING")
                      if r.data.tags.get("trial_id") == "1"], proc, what="the second trial")
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130, err[-2000:]
    code, out, err = finish(start([*args, "--trials", "2"], tmp_path))
    assert code == 0, err[-2000:]
    assert "2 new trials" in out, out  # the interrupted trial, run again, is one of them
    children, parents = runs(tmp_path, "digits")
    last = max(parents, key=lambda r: r.info.start_time)
    mine = [r for r in children if r.data.tags["mlflow.parentRunId"] == last.info.run_id]
    assert len(mine) == 2 and {r.info.status for r in mine} == {"FINISHED"}
    assert sorted(r.data.tags["trial_id"] for r in mine) == ["1", "2"]


@one_pass("torch")
def test_a_killed_kerastuner_worker_is_replaced_and_its_trial_run_again_item_4(tmp_path):
    proc = start(["--engine", "kerastuner", "--workers", "2", "--trials", "3", "--epochs", "8",
                  *FAST[:-1]], tmp_path)
    victim = wait_for(lambda: [r for r in _kerastuner_runs(tmp_path, "RUNNING")
                               if r.data.metrics], proc, what="an epoch")[0]
    os.kill(int(victim.data.tags["worker"].rpartition(":")[2]), signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 0, err[-2000:]
    assert "died (killed by SIGKILL); its trial is retried" in err
    assert "3 new trials, 3 in all" in out, out
    children = _kerastuner_runs(tmp_path)
    attempts = {}
    for run in children:
        attempts.setdefault(run.data.tags["trial_id"], []).append(run.info.status)
    assert sorted(attempts) == ["0", "1", "2"]
    assert sorted(attempts[victim.data.tags["trial_id"]]) == ["FAILED", "FINISHED"]
    assert sorted(s for a in attempts.values() for s in a) == ["FAILED"] + ["FINISHED"] * 3


@one_pass("tensorflow")
def test_a_postgresql_tracking_uri_works_with_psycopg2_only_item_8(tmp_path, pg_database):
    # (here psycopg2 is installed and psycopg 3 is not: MLflow's SQLAlchemy failed on that)
    code, out, err = finish(start(["--trials", "1", "--epochs", "1", "--tracking-uri",
                                   pg_database, *FAST], tmp_path))
    assert code == 0, err[-2000:]
    assert PASSWORD not in out + err and "postgresql://kr_user:***@" in out
    from search.stores import sqlalchemy_url

    children, parents = runs(tmp_path, "digits", sqlalchemy_url(pg_database))
    assert [r.info.status for r in children + parents] == ["FINISHED", "FINISHED"]
