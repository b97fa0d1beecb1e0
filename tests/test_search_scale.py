"""`keras-relu search --workers N`: exact trial counts, SIGKILL recovery, SIGINT, masked URLs.

Every CLI call runs in its own process on this test process's backend (KERAS_BACKEND).
PostgreSQL tests use a fresh database per module on 127.0.0.1:5432 (trust auth); without a
server they are skipped with the reason, unless KERAS_RELU_REQUIRE_POSTGRES=1 (CI): then
they fail.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
from conftest import PASSWORD, one_pass, worker_env
from mlflow import MlflowClient

from search.engines import optuna as engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--fix=depth=1", "--fix=width=16", "--batch-size=128", "--pruner=none"]
# A learning rate no sampled optimizer diverges at: a trial that ends on its own (NaN) is
# not the interrupted one the SIGINT test looks for.
LONG_TRIALS = ["--fix=depth=1", "--fix=width=16", "--fix=learning_rate=0.001",
               "--batch-size=16", "--pruner=none"]
Failed = optuna.trial.TrialState.FAIL


def _start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "search.cli", "search", *args], cwd=cwd,
                            env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def _children(cwd, name):
    client = MlflowClient(f"sqlite:///{cwd}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=500)
    return client, [r for r in runs if "mlflow.parentRunId" in r.data.tags], \
        [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def _retried(trials):
    return {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}


def check_exact(study, cwd, requested):
    """Every trial ended; `requested` of them count (a retried failure does not); one MLflow
    child run per Optuna trial, none duplicated or lost, with the trial's state."""
    trials = study.get_trials()
    assert all(t.state.is_finished() for t in trials), [t.state for t in trials]
    counted = [t for t in trials if t.number not in _retried(trials)]
    assert len(counted) == requested, [(t.number, t.state) for t in trials]
    _, children, _ = _children(cwd, study.study_name)
    numbers = sorted(int(r.data.tags["trial_number"]) for r in children)
    assert numbers == [t.number for t in trials]
    status = {int(r.data.tags["trial_number"]): r.info.status for r in children}
    for t in trials:
        assert status[t.number] == ("FINISHED" if t.state.name == "COMPLETE" else
                                    "FAILED" if t.state == Failed else "KILLED"), t.number
    return trials


def kill_one_worker_mid_trial(study_name, storage, proc, timeout=240):
    """SIGKILL the worker of the first trial that has finished an epoch; its trial number.
    Callers give trials a few epochs more, so the kill lands before the trial ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:
            time.sleep(0.2)
            continue
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.intermediate_values and "worker" in t.user_attrs:
                os.kill(int(t.user_attrs["worker"].rpartition(":")[2]), signal.SIGKILL)
                return t.number
        time.sleep(0.05)
    raise AssertionError("no trial reached its second epoch")


def check_killed(trials, killed):
    dead = trials[killed]
    assert dead.state == Failed and "SIGKILL" in dead.user_attrs["reason"]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].params == dead.params
    assert retry[0].state == optuna.trial.TrialState.COMPLETE


@one_pass("tensorflow")
def test_sigkill_on_the_local_journal_default(tmp_path):
    proc = _start(["--workers", "2", "--trials", "3", "--epochs", "6", *FAST], tmp_path)
    storage = engine.open_storage(str(tmp_path / engine.DEFAULT_STORAGE))
    killed = kill_one_worker_mid_trial("digits", storage, proc)
    code, output = _finish(proc)
    assert code == 0, output[-3000:]
    assert "died (killed by SIGKILL)" in output
    study = optuna.load_study(study_name="digits", storage=storage)
    trials = check_exact(study, tmp_path, 3)
    check_killed(trials, killed)
    assert sum(t.state.name == "COMPLETE" for t in trials) == 3


@one_pass("tensorflow")  # no Keras in it
def test_a_killed_lock_holder_does_not_wedge_the_relative_journal(tmp_path, monkeypatch):
    """The default storage is a relative path. A worker SIGKILLed while holding the journal
    lock leaves the lock behind; the next writer must break it after Optuna's grace period
    (30 s) instead of spinning forever (CI hung here when the lock symlink dangled)."""
    monkeypatch.chdir(tmp_path)
    optuna.create_study(study_name="held", storage=engine.open_storage(engine.DEFAULT_STORAGE))
    holder = subprocess.run(
        [sys.executable, "-c", "import os, signal; from search.engines import optuna as e; "
         "e.open_storage(e.DEFAULT_STORAGE)._backend._lock.acquire(); "
         "os.kill(os.getpid(), signal.SIGKILL)"], cwd=tmp_path, env=worker_env())
    assert holder.returncode == -signal.SIGKILL
    assert os.path.lexists(tmp_path / (engine.DEFAULT_STORAGE + ".lock"))
    writer = subprocess.run(
        [sys.executable, "-c", "import optuna; from search.engines import optuna as e; "
         "optuna.create_study(study_name='after', storage=e.open_storage(e.DEFAULT_STORAGE))"],
        cwd=tmp_path, env=worker_env(), capture_output=True, text=True, timeout=120)
    assert writer.returncode == 0, writer.stderr[-2000:]
    names = optuna.get_all_study_names(engine.open_storage(engine.DEFAULT_STORAGE))
    assert sorted(names) == ["after", "held"]


# ---- PostgreSQL -------------------------------------------------------------------------

@one_pass("torch")
def test_four_workers_on_postgres_run_exactly_the_requested_trials(tmp_path, pg_database):
    study_name = f"four-{uuid.uuid4().hex[:6]}"
    code, output = _finish(_start(["--workers", "4", "--trials", "5", "--epochs", "1",
                                   "--study-name", study_name, "--storage", pg_database,
                                   *FAST], tmp_path))
    assert code == 0, output[-3000:]
    study = optuna.load_study(study_name=study_name, storage=engine.open_storage(pg_database))
    trials = check_exact(study, tmp_path, 5)
    assert len(trials) == 5 and len({t.user_attrs["worker"] for t in trials}) == 4


@one_pass("torch")
def test_sigkill_on_postgres_heartbeat_retries_the_trial(tmp_path, pg_database):
    study_name = f"kill-{uuid.uuid4().hex[:6]}"
    proc = _start(["--workers", "2", "--trials", "3", "--epochs", "6", "--study-name",
                   study_name, "--storage", pg_database, *FAST], tmp_path)
    storage = engine.open_storage(pg_database)
    killed = kill_one_worker_mid_trial(study_name, storage, proc)
    code, output = _finish(proc)
    assert code == 0, output[-3000:]
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = check_exact(study, tmp_path, 3)
    check_killed(trials, killed)


@one_pass("tensorflow")
def test_sigint_stops_cleanly_resumes_and_never_shows_the_password(tmp_path, pg_database):
    study_name = f"int-{uuid.uuid4().hex[:6]}"
    # Long trials (20 epochs of 68 batches), so the SIGINT lands while both still train
    args = ["--workers", "2", "--trials", "2", "--epochs", "20", "--study-name", study_name,
            "--storage", pg_database, *LONG_TRIALS]
    storage = engine.open_storage(pg_database)
    proc = _start(args, tmp_path)
    deadline = time.monotonic() + 240
    while not any(t.intermediate_values for t in _trials(study_name, storage)):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    code, first = _finish(proc)
    assert code == 130, first[-3000:]
    interrupted = [t for t in _trials(study_name, storage) if t.state == Failed]
    assert interrupted and all("interrupted" in t.user_attrs.get("reason", "")
                               for t in interrupted), [
        (t.number, t.state.name, t.user_attrs.get("reason"), t.intermediate_values,
         t.datetime_start, t.datetime_complete) for t in _trials(study_name, storage)]
    client, children, parents = _children(tmp_path, study_name)
    assert [p.info.status for p in parents] == ["KILLED"]
    killed_runs = [r for r in children if r.info.status == "KILLED"]
    assert {int(r.data.tags["trial_number"]) for r in killed_runs} == \
        {t.number for t in interrupted}

    code, second = _finish(_start(args, tmp_path))  # the same command resumes the study
    assert code == 0, second[-3000:]
    trials = _trials(study_name, storage)
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 2
    assert "in all (postgresql://kr_user:***@127.0.0.1:5432/" in second

    # The password is nowhere: output, params, tags, metric names, text artifacts.
    client, children, parents = _children(tmp_path, study_name)
    seen = [first, second]
    for run in children + parents:
        seen += [repr(run.data.params), repr(run.data.tags), repr(list(run.data.metrics))]
        seen += _artifact_texts(client, run.info.run_id)
    assert not [s for s in seen if PASSWORD in s]


def _trials(study_name, storage):
    try:
        return optuna.load_study(study_name=study_name, storage=storage).get_trials()
    except KeyError:
        return []


def _artifact_texts(client, run_id, path=None):
    import pathlib

    texts = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            texts += _artifact_texts(client, run_id, item.path)
        else:
            local = pathlib.Path(client.download_artifacts(run_id, item.path))
            texts.append(local.read_bytes().decode(errors="replace"))
    return texts


@one_pass("tensorflow")
def test_kerastuner_chief_and_two_workers_complete_a_small_search(tmp_path):
    code, output = _finish(_start(["--engine", "kerastuner", "--workers", "2", "--trials", "3",
                                   "--epochs", "1", *FAST[:-1]], tmp_path))
    assert code == 0, output[-3000:]
    assert "3 new trials, 3 in all" in output
    _, children, parents = _children(tmp_path, "digits")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(r.data.tags["trial_id"] for r in children) == ["0", "1", "2"]
    assert {r.info.status for r in children} == {"FINISHED"}
