"""A worker SIGKILLed behind the storage proxy (or on a journal file): whoever fails its
trial first, the launcher or another worker's heartbeat, the dead worker's quota counts the
trials it finished and not that one, and its retry starts with a clean slate.

Seen in CI (torch, chaos through the proxy): another worker's `fail_stale` failed the
trial before the launcher looked, the launcher counted it as done, and the search ended
with 11 of 12 trials.
"""

import socket
import subprocess
import time

import optuna
from conftest import search_logic

from search.engines.optuna import DIED_WITH, ProxyHeartbeat
from search.engines.optuna_heartbeat import STAMP
from search.parallel.optuna import Launcher
from search.tracking import Tracker

State = optuna.trial.TrialState


def dead_worker():
    """A `HOST:PID` of a process that ran here and has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}"


def study_with_a_dead_worker(tmp_path, wid):
    """Two trials `wid` finished and one it was running when it died (its last beat 60 s
    ago), on a journal file."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.create_study(storage=storage, direction="maximize")
    for value in (0.5, 0.6):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr("worker", wid)
        study.tell(trial, value)
    running = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    running.set_user_attr("worker", wid)
    storage.set_trial_system_attr(running._trial_id, STAMP, time.time() - 60)
    return study, running.number


def launcher_of(study, tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "quota")
    tracker.start_parent({"engine": "optuna"}, {})
    launcher = Launcher.__new__(Launcher)  # what `_recover` reads of a running launcher
    launcher.study, launcher.tracker, launcher.rdb = study, tracker, False
    return launcher


@search_logic("torch")
def test_a_dead_workers_trial_failed_first_by_another_worker_is_not_in_its_quota(tmp_path):
    wid = dead_worker()
    study, number = study_with_a_dead_worker(tmp_path, wid)
    beat = ProxyHeartbeat(study)  # another worker, asking for its next trial
    try:
        assert beat.fail_stale() == 1
    finally:
        beat.close()
    failed = study.trials[number]
    assert failed.state == State.FAIL and failed.user_attrs["reason"] == f"process {wid} died"
    assert Launcher._recover(launcher_of(study, tmp_path), wid, "died") == 2  # not 3
    assert [t.state for t in study.trials] == [State.COMPLETE] * 2 + [State.FAIL, State.WAITING]
    assert study.trials[number].system_attrs[DIED_WITH] == wid


@search_logic("torch")
def test_the_launcher_first_then_the_retry_is_not_taken_for_stale(tmp_path):
    wid = dead_worker()
    study, number = study_with_a_dead_worker(tmp_path, wid)
    assert Launcher._recover(launcher_of(study, tmp_path), wid, f"worker {wid} died") == 2
    retry = study.ask()  # the replacement worker, before its first beat
    assert retry.number == number + 1 and "worker" not in study.trials[retry.number].user_attrs
    beat = ProxyHeartbeat(study)  # another worker asks meanwhile: the retry is not stale
    try:
        assert beat.fail_stale() == 0
    finally:
        beat.close()
    assert study.trials[retry.number].state == State.RUNNING
    assert study.trials[number].system_attrs[DIED_WITH] == wid
    assert not {STAMP, DIED_WITH} & set(study.trials[retry.number].system_attrs)
