"""Issue #24 with real processes: a tracking server killed mid-search (no password in any
line), two first uses of fresh PostgreSQL stores at once, a query-string password under
--workers, Ctrl-C during the control trials and their resume, SIGTERM in the first
seconds, and workers whose launcher was SIGKILLed.

Each scenario runs on one backend pass (see `one_pass` in conftest.py).
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
from conftest import PASSWORD, one_pass, worker_env
from test_stops import (CommandLines, descendants, finish, runs, start, start_mlflow_server,
                        trained_an_epoch, trials, wait_for)

from search.engines import optuna as engine
from search.recovery import start_time

FAST = ["--fix=depth=1", "--fix=width=16", "--batch-size=128", "--pruner=none"]
State = optuna.trial.TrialState
JOURNAL = engine.DEFAULT_STORAGE


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


@one_pass("torch")
def test_a_tracking_server_killed_mid_search_shows_no_password_item_1(tmp_path):
    server, url = start_mlflow_server(tmp_path / "server")
    try:
        uri = url.replace("http://", "http://u:SECRET-kr@")
        # no retries: MLflow would retry for minutes before the failure is printed
        env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
        proc = start(["--workers", "2", "--trials", "6", "--epochs", "30", "--no-controls",
                      "--tracking-uri", uri, *FAST], tmp_path, env)
        lines = CommandLines(proc)
        storage = engine.open_storage(str(tmp_path / JOURNAL))
        wait_for(lambda: trained_an_epoch(storage, "digits"), proc, what="an epoch")
    finally:
        _kill_group(server)  # mid-search
    code, out, err = finish(proc)
    lines.join(5)
    assert code == 1, err[-3000:]
    assert "keras-relu search: failed:" in err and "http://u:***@127.0.0.1" in out + err
    shown = [line for text in [out, err, *lines.seen] for line in text.splitlines()
             if "SECRET-kr" in line]
    assert not shown, shown[:5]


_FIRST_USE = """
import pathlib, sys, time
from search.engines.optuna_storage import open_storage
from search.tracking import Tracker
import optuna
print("ready", flush=True)
while not pathlib.Path(sys.argv[3]).exists():
    time.sleep(0.002)
optuna.create_study(study_name=sys.argv[4], storage=open_storage(sys.argv[1]))
Tracker(sys.argv[2], sys.argv[4])
print("made", flush=True)
"""


@one_pass("jax")
def test_two_first_uses_of_fresh_postgresql_stores_at_once_item_3(tmp_path, pg_new_database):
    """Two processes open a fresh Optuna storage and a fresh MLflow store at the same
    moment, 5 times in a row: both succeed, and both find what the other made."""
    for round_ in range(5):
        studies, runs_ = pg_new_database(), pg_new_database()
        go = tmp_path / f"go-{round_}"
        procs = [subprocess.Popen([sys.executable, "-c", _FIRST_USE, studies, runs_, str(go),
                                   f"s{i}"], cwd=tmp_path, env=worker_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
        for proc in procs:  # both imported: the schemas are made at the same moment
            assert proc.stdout.readline().strip() == "ready", proc.communicate()[1][-2000:]
        go.touch()
        results = [proc.communicate(timeout=120) for proc in procs]
        assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in results]
        assert [out.strip() for out, _ in results] == ["made", "made"]
        assert sorted(optuna.get_all_study_names(engine.open_storage(studies))) == ["s0", "s1"]
        from mlflow import MlflowClient

        from search.stores import sqlalchemy_url

        names = {e.name for e in MlflowClient(sqlalchemy_url(runs_)).search_experiments()}
        assert {"s0", "s1"} <= names, (round_, names)


@one_pass("tensorflow")
def test_a_query_string_password_is_never_shown_nor_stored_item_5(tmp_path, pg_database):
    name = f"query-{uuid.uuid4().hex[:6]}"
    storage = pg_database.replace(f":{PASSWORD}@", "@") + f"?password={PASSWORD}"
    proc = start(["--workers", "2", "--trials", "2", "--epochs", "1", "--no-controls",
                  "--study-name", name, "--storage", storage, *FAST], tmp_path)
    lines = CommandLines(proc)
    code, out, err = finish(proc)
    lines.join(5)
    assert code == 0, err[-3000:]
    assert "?password=***)" in out  # where the study is, masked
    assert len([cmd for cmd in lines.seen if " worker " in cmd]) >= 2
    opened = engine.open_storage(storage)
    study = optuna.load_study(study_name=name, storage=opened)
    stored = json.dumps([study.user_attrs, opened.get_study_system_attrs(study._study_id),
                         [(t.user_attrs, t.system_attrs) for t in study.trials]], default=str)
    _, parents = runs(tmp_path, name)
    assert parents[0].data.params["storage"].endswith("?password=***")
    seen = [out, err, stored, repr(parents[0].data.params), *lines.seen]
    assert not [text for text in seen if PASSWORD in text]


@one_pass("torch")
def test_ctrl_c_during_the_controls_then_a_resume_that_runs_them_all_items_9_and_12(tmp_path):
    """Ctrl-C while both workers train a control trial of a new study: one line per
    worker at most; the resume runs the controls that never ended first, and its report
    lists them all (three in this space: relu, sugar_bsilu, relu+residual)."""
    storage = engine.open_storage(str(tmp_path / JOURNAL))
    args = ["--epochs", "6", "--batch-size", "128", "--pruner", "none",
            "--fix", "recycle_every=2", "--fix", "initializer=he_normal"]
    labels = {"relu", "sugar_bsilu", "relu+residual"}
    proc = start([*args, "--workers", "2", "--trials", "4"], tmp_path)
    wait_for(lambda: len(trained_an_epoch(storage, "digits")) == 2, proc, what="two epochs")
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130, err[-3000:]
    stopped = [line for line in err.splitlines() if "nterrupt" in line]
    assert len(stopped) <= 3 and "Traceback" not in err, err[-3000:]  # 2 workers, launcher
    lost = [t.user_attrs["control"] for t in trials(storage, "digits") if t.state == State.FAIL]
    assert sorted(lost) == ["relu", "sugar_bsilu"], lost

    code, out, err = finish(start([*args, "--trials", "3"], tmp_path))  # in one process
    assert code == 0, err[-3000:]
    ended = {t.user_attrs["control"] for t in trials(storage, "digits")
             if t.state == State.COMPLETE and "control" in t.user_attrs}
    assert ended == labels
    report = out[out.index("Control trials"):]
    assert all(f"  {label} " in report for label in labels), report


@one_pass("tensorflow")
def test_sigterm_in_the_first_seconds_exits_130_with_a_consistent_store_item_10(tmp_path):
    moments = {"imports": lambda cwd: True,  # as soon as the process runs
               "study": lambda cwd: (cwd / JOURNAL).exists()}  # while the stores are made
    for moment, ready in moments.items():
        cwd = tmp_path / moment
        cwd.mkdir()
        proc = start(["--trials", "2", "--epochs", "1", *FAST], cwd)
        time.sleep(1.0)
        wait_for(lambda: ready(cwd), proc, 120, f"the moment {moment}")
        proc.send_signal(signal.SIGTERM)
        code, out, err = finish(proc)
        assert code == 130, (moment, code, err[-3000:])
        assert err.strip().splitlines()[-1] == "keras-relu: interrupted", err[-3000:]
        if moment == "study":
            assert all(t.state != State.RUNNING for t in trials(
                engine.open_storage(str(cwd / JOURNAL)), "digits"))
            if (cwd / "mlruns" / "mlflow.db").exists():
                children, parents = runs(cwd, "digits")
                assert [r.info.status for r in parents] in ([], ["KILLED"]) and not children


@one_pass("jax")
def test_workers_stop_when_their_launcher_is_killed_item_11(tmp_path):
    storage = engine.open_storage(str(tmp_path / JOURNAL))
    proc = start(["--workers", "2", "--trials", "20", "--epochs", "20", "--no-controls",
                  *FAST], tmp_path)
    wait_for(lambda: trained_an_epoch(storage, "digits"), proc, what="an epoch")
    workers = [pid for pid, cmd in descendants(proc.pid).items() if " worker " in cmd]
    assert len(workers) == 2, workers
    try:
        killed = time.monotonic()
        proc.kill()  # SIGKILL: it closes nothing and tells no one
        finish(proc, timeout=60)  # (its pipes close when the workers, which share them, end)
        wait_for(lambda: all(start_time(pid) is None for pid in workers), None, 60,
                 "the workers to stop")
        print(f"\nworkers stopped {time.monotonic() - killed:.1f} s after their launcher")
    finally:
        for pid in workers:
            if start_time(pid) is not None:
                os.kill(pid, signal.SIGKILL)
    ended = trials(storage, "digits")
    assert not [t for t in ended if t.state == State.RUNNING]
    stopped = [t for t in ended if t.state == State.FAIL]
    assert stopped and all(t.user_attrs["reason"] == "interrupted: its launcher died"
                           for t in stopped), [(t.number, t.user_attrs) for t in stopped]
    assert sum(t.state == State.COMPLETE for t in ended) < 18  # not their whole quota
    children, _ = runs(tmp_path, "digits")
    status = {int(r.data.tags["trial_number"]): r.info.status for r in children}
    assert {status[t.number] for t in stopped} == {"KILLED"}
    assert "RUNNING" not in status.values()

