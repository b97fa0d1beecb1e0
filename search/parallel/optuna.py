"""Several worker processes on one Optuna study: launch, pin, watch, recover.

`search.run(workers=N)` creates the study and the MLflow parent run, stores the job in the
study (settings, space, parent run), then starts N `keras-relu worker` processes that
share the storage (a journal file locally, PostgreSQL/MySQL across machines). `trials` is
split into per-worker quotas, so the invocation runs exactly that many. A worker killed
mid-trial: on an RDB storage Optuna's heartbeat fails its trial and the retry callback
re-queues it; the journal storage and a storage proxy (`grpc://`) have no Optuna heartbeat,
so the launcher does the same when `waitpid` reports the death. Either way the launcher closes the trial's MLflow run as
FAILED and starts a replacement worker for the rest of the quota. A worker also leaves,
cleanly, after `trials_per_process` trials (25 on TensorFlow, whose memory grows with every
fit) and a fresh one takes the rest of its quota. The storage URL and the
tracking URI reach workers through the environment (never argv, which `ps` shows).
"""

import datetime
import os
import socket
import sys
import time

from search import recovery, runtime
from search.names import STORAGE_ENV
from search.store_health import StoreLost

RESPAWNS = 3  # replacement workers per slot before the search gives up
LOST_GRACE = 60  # seconds the workers have to say that the tracking store is gone


class Launcher:
    """The local worker processes of one search on an Optuna study."""

    def __init__(self, study, settings, tracker):
        self.study, self.settings, self.tracker = study, settings, tracker
        # Optuna's heartbeat: RDB only (behind a storage proxy the launcher retries itself)
        self.rdb = "://" in settings.storage_url and not self._proxied
        self.devices = runtime.parse_devices(settings.devices)
        self.workers = settings.worker_count
        backend = os.environ.get("KERAS_BACKEND", "tensorflow")
        self.env = {**runtime.worker_env(self.workers, backend, tracker.uri),
                    STORAGE_ENV: settings.storage_url}
        self.procs = {}  # slot -> (Popen, worker id, the slot's trials still to run)
        self.per_process = runtime.trials_per_process(settings.trials_per_process, backend)
        self.deadline = time.monotonic() + settings.timeout if settings.timeout else None
        self.respawns = {}
        self.ids = set()  # every worker id started
        self.began = datetime.datetime.now()  # Optuna's trial times are naive local times

    def _start(self, slot, rest):
        """A worker for the slot's next `per_process` trials of `rest`, within the timeout."""
        args = ["--study-name", self.study.study_name,
                "--trials", str(min(rest, self.per_process or rest)),
                "--parent-run-id", self.tracker.parent_id, "--quiet"]
        if self.deadline:
            left = self.deadline - time.monotonic()
            if left < 1:  # not worth a process start
                return
            args += ["--timeout", f"{left:.1f}"]
        device = self.devices[slot % len(self.devices)] if self.devices else None
        proc = runtime.spawn(runtime.worker_command(*args), self.env, device)
        self.procs[slot] = (proc, f"{socket.gethostname()}:{proc.pid}", rest)
        self.ids.add(self.procs[slot][1])

    def run(self, on_trial):
        """Start the workers, report this invocation's finished trials, recover from
        deaths, renew workers; until all have exited."""
        share, extra = divmod(self.settings.trials, self.workers)
        for slot in range(self.workers):
            if share + (slot < extra):
                self._start(slot, share + (slot < extra))
        seen = set()
        try:
            while self.procs:
                time.sleep(0.5)
                for slot, (proc, wid, rest) in list(self.procs.items()):
                    if proc.poll() is not None:
                        del self.procs[slot]
                        self._ended(slot, proc.returncode, wid, rest)
                for trial in self.study.get_trials(deepcopy=False):
                    if (trial.state.is_finished() and trial.number not in seen
                            and trial.user_attrs.get("worker") in self.ids):
                        seen.add(trial.number)
                        on_trial(self.study, trial)
        except BaseException as err:  # interrupted, or a worker failed: stop the others
            lost = not isinstance(err, KeyboardInterrupt) and self._tracking_lost()
            self._stop_workers(LOST_GRACE if lost else 0)
            self._check_proxy()
            self._close_leftovers("interrupted by the user" if isinstance(err, KeyboardInterrupt)
                                  else f"search stopped: {err}")
            if lost:
                raise StoreLost(self.tracker.lost) from None
            raise

    @property
    def _proxied(self):
        return self.settings.storage_url.startswith("grpc://")

    def _check_proxy(self):
        """`StoreLost` if the study's storage proxy stopped answering (its workers said so)."""
        from search import UsageError, stores
        from search.store_health import StoreLost

        if self._proxied:
            try:
                stores.check_proxy(self.settings.storage_url, timeout=2)
            except UsageError:
                raise StoreLost(f"the storage proxy {self.settings.storage_url} stopped "
                                "answering; resume once it is back") from None

    def _tracking_lost(self):
        """Whether the tracking store stopped answering (a worker failed for it)."""
        try:
            self.tracker.check_store()
        except StoreLost:
            return True
        return False

    def _stop_workers(self, grace=0):
        """Stop the workers, first letting them `grace` s to end on their own (each says
        in one line that the tracking store is gone)."""
        procs = [proc for proc, _, _ in self.procs.values()]
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(proc.poll() is None for proc in procs):
            time.sleep(0.2)
        runtime.stop(procs)

    def _ended(self, slot, code, wid, rest):
        """A worker exited: done with its share (a fresh one takes the rest), or dead (its
        trial is retried and a replacement takes the rest)."""
        import signal

        if code == 0:
            done = self._finished(wid)
            if done == 0:  # it found nothing to do: a fresh one would not either
                return
        elif code == 130 or code == -signal.SIGINT:
            raise KeyboardInterrupt
        elif code > 0 or self.respawns.get(slot, 0) >= RESPAWNS:
            raise RuntimeError(f"worker {wid} failed ({runtime.describe_exit(code)})")
        else:
            self.respawns[slot] = self.respawns.get(slot, 0) + 1
            reason = f"worker {wid} died ({runtime.describe_exit(code)})"
            print(f"keras-relu: {reason}; its trial is retried", file=sys.stderr)
            done = self._recover(wid, reason)
        if rest - done > 0:
            self._start(slot, rest - done)

    def _finished(self, wid):
        """How many of the study's trials worker `wid` finished, not counting the one its
        death failed (re-queued for the rest of its quota, whoever failed it first)."""
        from search.engines.optuna import DIED_WITH

        return sum(t.state.is_finished() and t.system_attrs.get(DIED_WITH) != wid
                   for t in self.study.get_trials(deepcopy=False)
                   if t.user_attrs.get("worker") == wid)

    def _recover(self, wid, reason):
        """Fail and re-queue the dead worker's running trial; its trials finished before."""
        import optuna

        from search.engines.optuna import fail_and_retry, mark_died

        running = (optuna.trial.TrialState.RUNNING,)
        for trial in self.study.get_trials(deepcopy=False, states=running):
            if trial.user_attrs.get("worker") != wid:
                continue
            recovery.close_attempt(self.tracker, trial, reason)  # made FAILED if it had none
            if self.rdb:  # Optuna's heartbeat fails and retries it after the grace period
                mark_died(self.study._storage, trial, reason)
                self._await_heartbeat(trial._trial_id)
            else:  # (unless a worker's `fail_stale` found it first)
                fail_and_retry(self.study, trial, reason)
        recovery.close_worker_runs(self.study, self.tracker, wid)  # its last write was lost
        return self._finished(wid)

    def _await_heartbeat(self, trial_id):
        """Until Optuna's heartbeat check fails (and re-queues) the dead worker's trial, so
        that the replacement worker picks up the retry rather than a fresh trial."""
        import warnings

        import optuna

        while self.study._storage.get_trial(trial_id).state == optuna.trial.TrialState.RUNNING:
            with warnings.catch_warnings():  # "fail_stale_trials is experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
            time.sleep(1)

    def _close_leftovers(self, reason):
        """After a stop: a trial still RUNNING is failed, and the run of every interrupted
        attempt is KILLED (made KILLED if the stop came before the attempt made its run;
        a trial of no worker that started after this search did counts as ours: it was
        interrupted before it could record its worker)."""
        import optuna

        state = optuna.trial.TrialState
        for trial in self.study.get_trials(deepcopy=False, states=(state.RUNNING, state.FAIL)):
            worker = trial.user_attrs.get("worker")
            why = trial.user_attrs.get("reason", "")
            ours = worker in self.ids or (worker is None and trial.datetime_start is not None
                                          and trial.datetime_start >= self.began)
            if not ours:
                continue
            running = trial.state == state.RUNNING
            if running or not why:  # a stopped trial says why
                self.study._storage.set_trial_user_attr(trial._trial_id, "reason", reason)
            if running:
                self.study._storage.set_trial_state_values(trial._trial_id, state.FAIL)
            # An attempt that died earlier keeps its FAILED run; one interrupted after its run
            # was closed FINISHED (between the fit and Optuna's tell) is a KILLED one.
            if not self.tracker.lost:  # else a resume closes the runs (search.recovery)
                recovery.close_attempt(self.tracker, trial, why or reason, "KILLED",
                                       keep=("FAILED",))


def launch(study, settings, tracker, on_trial):
    """Run `settings.trials` trials of `study` in `settings.worker_count` local workers."""
    Launcher(study, settings, tracker).run(on_trial)
