"""Closing what a dead process left RUNNING: Optuna trials and MLflow runs.

A process killed with SIGKILL (or by the kernel) closes nothing. Three places notice:
- `close_dead`, when a search starts on a study (a resume): trials and runs whose
  process (`HOST:PID`, the trial's `worker` attribute, the run's `process` tag) ran on
  this host and is gone are closed; FAILED, like a killed worker's trial.
- `on_stale_trial`, from Optuna's heartbeat callback: a trial whose worker stopped
  beating (on another machine too) has its attempt's MLflow run closed FAILED; an
  attempt killed before its run existed gets a FAILED run, so every attempt has one.
- `close_attempt` and `close_worker_runs`, from the local launcher when `waitpid`
  reports a worker's death (the journal file has no heartbeat).
"""

import os
import socket
import sys

from search.child_run import PROCESS_TAG, STATUS
from search.tracking import active_tracker

_STATUS_OF_TRIAL = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}  # anything else: FAILED


def start_time(pid):
    """When process `pid` started (epoch seconds), or None if there is no such live
    process (a zombie, killed and not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
        with open("/proc/stat") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime"))
    except (OSError, StopIteration, ValueError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def is_dead(process, since=None):
    """True if `process` (`HOST:PID`) ran on this host and is gone: no such process, or
    the pid now belongs to one started after `since` (epoch seconds; the pid was
    reused). False for a live process or another host (unknowable from here)."""
    host, _, pid = str(process or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    started = start_time(int(pid))
    return started is None or (since is not None and started > since + 1)


def close_dead(study, tracker, out=sys.stderr):
    """At the start of a search: fail the study's RUNNING trials and close the MLflow
    runs whose process died; say how many in one line. Returns that count."""
    count = _fail_dead_trials(study) if hasattr(study, "get_trials") else 0
    count += close_dead_runs(tracker, study)
    if count:
        print(f"keras-relu: closed {count} trial(s) and run(s) left RUNNING by a process "
              "that died", file=out, flush=True)
    return count


def _fail_dead_trials(study):
    import optuna

    running = optuna.trial.TrialState.RUNNING
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(running,)):
        worker = trial.user_attrs.get("worker")
        since = trial.datetime_start.timestamp() if trial.datetime_start else None
        if worker and is_dead(worker, since):
            storage = study._storage
            try:
                storage.set_trial_user_attr(trial._trial_id, "reason", f"process {worker} died")
                storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            except RuntimeError:  # UpdateFinishedTrialError: it ended meanwhile
                continue
            count += 1
    return count


def close_dead_runs(tracker, study=None, processes=None, ended_only=False):
    """Close the RUNNING runs of the tracker's experiment whose process died (or, given
    `processes`, that one of those created); a trial's run takes the status of its
    Optuna trial if `study` has it (COMPLETE: FINISHED), else FAILED. `ended_only`: not
    the run of a trial still RUNNING (Optuna's heartbeat closes that one)."""
    query = "attributes.status = 'RUNNING'"
    count = 0
    for run in tracker.client.search_runs([tracker.experiment_id], filter_string=query,
                                          max_results=5000):
        process = run.data.tags.get(PROCESS_TAG) or run.data.tags.get("worker")
        gone = (process in processes) if processes is not None else \
            is_dead(process, run.info.start_time / 1000)
        optuna_run = run.data.tags.get("engine") == "optuna"
        number = run.data.tags.get("trial_number")
        if gone and ended_only and optuna_run and _trial_status(study, number, None) is None:
            continue
        if gone:
            status = _trial_status(study if optuna_run else None, number)
            state = {v: k for k, v in STATUS.items() if k != "interrupted"}[status]
            tracker.log(run.info.run_id, tags={"state": state,
                                               "reason": f"process {process} died"})
            tracker.client.set_terminated(run.info.run_id, status)
            count += 1
    return count


def _trial_status(study, number, running="FAILED"):
    """The run status for trial `number`'s state (`running` while it runs)."""
    if study is None or number is None or not hasattr(study, "get_trials"):
        return "FAILED"
    for trial in study.get_trials(deepcopy=False):
        if str(trial.number) == number:
            if trial.state.name == "RUNNING":
                return running
            return _STATUS_OF_TRIAL.get(trial.state.name, "FAILED")
    return "FAILED"


def close_attempt(tracker, trial, reason, status="FAILED", keep=()):
    """Close the MLflow run of the failed attempt `trial` (an Optuna FrozenTrial) as
    `status`, whatever its state (even FINISHED: the trial failed after its run was
    closed) unless that state is in `keep`; if it has none (killed before its run was
    made), record one, so that every attempt has its run."""
    query = f"tags.trial_number = '{trial.number}' and tags.engine = 'optuna'"
    runs = tracker.client.search_runs([tracker.experiment_id], filter_string=query)
    state = "interrupted" if status == "KILLED" else "failed"
    for run in runs:
        if run.info.status != status and run.info.status not in keep:
            tracker.log(run.info.run_id, tags={"state": state, "reason": reason})
            tracker.client.set_terminated(run.info.run_id, status)
    if not runs and tracker.parent_id:
        tags = {"mlflow.parentRunId": tracker.parent_id, "trial_number": str(trial.number),
                "engine": "optuna", "state": state, "reason": reason,
                **({"worker": trial.user_attrs["worker"]} if "worker" in trial.user_attrs
                   else {})}
        run = tracker.client.create_run(tracker.experiment_id, tags=tags,
                                        run_name=f"trial-{trial.number}")
        tracker.log(run.info.run_id, params=trial.user_attrs.get("config") or trial.params)
        tracker.client.set_terminated(run.info.run_id, status)


def on_stale_trial(study, trial):
    """Optuna's heartbeat failed `trial` (its worker stopped beating, here or on another
    machine): close its attempt's run FAILED, in this process's tracking store."""
    tracker = active_tracker()
    if tracker is None:
        return
    try:
        close_attempt(tracker, trial, "its worker stopped (no heartbeat)")
    except Exception as err:  # the retry must happen even if MLflow is unreachable
        print(f"keras-relu: could not close the run of trial {trial.number}: {err}",
              file=sys.stderr)


def close_worker_runs(study, tracker, worker):
    """After worker `worker` died: close the runs it left RUNNING, each with its trial's
    status (a trial can be COMPLETE while the dead worker's last write was pending)."""
    return close_dead_runs(tracker, study, processes={worker})
