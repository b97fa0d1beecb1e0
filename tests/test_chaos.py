"""Chaos on PostgreSQL: a `--workers 3` search of 12 trials x 2 epochs while a script
SIGKILLs a random worker 3 times at random moments; then a search SIGTERMed halfway and
resumed to 12. Afterwards the store must be consistent: exactly 12 COMPLETE or PRUNED
trials, nothing RUNNING (trials or runs), one MLflow child run per trial attempt with
its attempt's status (a killed attempt FAILED, an interrupted one KILLED), the parent
run of a search that ended FINISHED.

The random moments come from one seed, printed (KERAS_RELU_CHAOS_SEED repeats a run).
"""

import os
import random
import signal
import threading
import time
import uuid

import optuna
from conftest import one_pass
from test_stops import descendants, finish, runs, start, trials, wait_for

from search.engines import optuna as engine

ARGS = ["--workers", "3", "--fix=depth=1", "--fix=width=16",
        "--batch-size=128", "--pruner=none"]
TRIALS = 12
State = optuna.trial.TrialState


class Killer(threading.Thread):
    """SIGKILLs a random worker of `proc` `times` times, each after a random pause."""

    def __init__(self, proc, rng, times=3):
        super().__init__(daemon=True)
        self.proc, self.rng, self.times, self.killed = proc, rng, times, []
        self.start()

    def run(self):
        while len(self.killed) < self.times and self.proc.poll() is None:
            time.sleep(self.rng.uniform(1.0, 9.0))
            workers = [pid for pid, _ in _worker_pids(self.proc.pid)]
            if workers:
                pid = self.rng.choice(sorted(workers))
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                except ProcessLookupError:
                    pass


def _worker_pids(root):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                parent = int(handle.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmd = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if parent == root and " worker " in cmd:
            found.append((int(pid), cmd))
    return found


def check_consistent(cwd, storage, name, finished_parents):
    """The store after the storm: 12 trials done, nothing RUNNING, a run per attempt."""
    ended = trials(storage, name)
    assert not [t.number for t in ended if not t.state.is_finished()], \
        [(t.number, t.state.name) for t in ended]
    done = [t for t in ended if t.state in (State.COMPLETE, State.PRUNED)]
    assert len(done) == TRIALS, [(t.number, t.state.name, t.user_attrs.get("reason"))
                                 for t in ended]
    children, parents = runs(cwd, name)
    assert sorted(int(r.data.tags["trial_number"]) for r in children) == \
        [t.number for t in ended]  # one child run per attempt, none lost or doubled
    status = {int(r.data.tags["trial_number"]): r.info.status for r in children}
    for t in ended:
        reason = t.user_attrs.get("reason", "")
        expected = {State.COMPLETE: {"FINISHED"}, State.PRUNED: {"KILLED"}}.get(
            t.state, {"KILLED"} if "interrupted" in reason else {"FAILED"} if reason else
            {"KILLED", "FAILED"})  # no reason: stopped before its objective began
        assert status[t.number] in expected, (t.number, t.state.name, reason, status[t.number])
    assert not [r for r in children + parents if r.info.status == "RUNNING"]
    assert sorted(r.info.status for r in parents) == sorted(finished_parents)
    return ended


@one_pass("torch")
def test_sigkill_three_random_workers_at_random_moments(tmp_path, pg_database):
    seed = int(os.environ.get("KERAS_RELU_CHAOS_SEED", time.time_ns() % 10**6))
    print(f"\nchaos seed {seed} (KERAS_RELU_CHAOS_SEED={seed} repeats it)")
    name = f"chaos-{uuid.uuid4().hex[:6]}"
    began = time.monotonic()
    proc = start([*ARGS, "--epochs", "2", "--trials", str(TRIALS), "--study-name", name,
                  "--storage", pg_database], tmp_path)
    killer = Killer(proc, random.Random(seed))
    code, out, err = finish(proc, timeout=600)
    killer.join(10)
    print(f"chaos: {len(killer.killed)} workers killed, {time.monotonic() - began:.0f} s")
    assert code == 0, err[-3000:]
    assert len(killer.killed) == 3
    assert err.count("died (killed by SIGKILL)") == 3, err[-3000:]
    ended = check_consistent(tmp_path, engine.open_storage(pg_database), name, ["FINISHED"])
    failed = [t for t in ended if t.state == State.FAIL]
    assert len(failed) <= 3 and all("died" in t.user_attrs["reason"] for t in failed)


@one_pass("torch")
def test_sigterm_to_the_launcher_halfway_then_resume_to_twelve(tmp_path, pg_database):
    name = f"term-{uuid.uuid4().hex[:6]}"
    storage = engine.open_storage(pg_database)
    began = time.monotonic()
    # 4 epochs, not 2: trials that are still running when the stop lands
    args = [*ARGS, "--epochs", "4", "--study-name", name, "--storage", pg_database]
    proc = start([*args, "--trials", str(TRIALS)], tmp_path)
    wait_for(lambda: sum(t.state == State.COMPLETE for t in trials(storage, name))
             >= TRIALS // 2, proc, 400, "half the trials")
    assert descendants(proc.pid)  # its workers are still at work
    halfway = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    stopped_at = time.monotonic()
    assert code in (130, 143), err[-3000:]
    stopped = trials(storage, name)
    assert all(t.state.is_finished() for t in stopped)
    _, parents = runs(tmp_path, name)
    assert [p.info.status for p in parents] == ["KILLED"]
    left = TRIALS - sum(t.state == State.COMPLETE for t in stopped)
    assert left > 0, "every trial had ended before the stop: nothing to resume"
    code, out, err = finish(start([*args, "--trials", str(left)], tmp_path), timeout=600)
    assert code == 0, err[-3000:]
    print(f"\nSIGTERM and resume: {time.monotonic() - began:.0f} s (halfway after "
          f"{halfway - began:.0f} s, stopped in {stopped_at - halfway:.0f} s, resume "
          f"{time.monotonic() - stopped_at:.0f} s)")
    check_consistent(tmp_path, storage, name, ["KILLED", "FINISHED"])
