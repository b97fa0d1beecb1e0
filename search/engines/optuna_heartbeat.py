"""A heartbeat for trials behind a storage proxy (`grpc://`), where Optuna has none.

Optuna's heartbeat (`heartbeat_interval`, `fail_stale_trials`, the retry callback) works
only for storages that inherit `optuna.storages._heartbeat.BaseHeartbeat` (RDB):
`is_heartbeat_enabled` is False for `GrpcStorageProxy`, so a worker killed behind the proxy
would leave its trial RUNNING for ever. `ProxyHeartbeat` does the same through the proxy:
a daemon thread stamps the running trial's system attribute `STAMP` (wall-clock seconds)
every `INTERVAL` s, and `fail_stale` fails each RUNNING trial whose stamp is older than
`GRACE` s (at once when its process, on this host, is gone) and re-queues it with the
retry callback the RDB heartbeat uses. The engine calls `fail_stale` before the first
trial and after each one, so a stale trial is failed when a worker next asks or a search
resumes. Clocks of the machines must agree (NTP).
"""

import threading
import time

import optuna

STAMP = "keras_relu:heartbeat"  # trial system attribute: the last beat, epoch seconds
INTERVAL, GRACE = 3, 10  # seconds, as the RDB heartbeat (`optuna_storage.HEARTBEAT`)


class ProxyHeartbeat:
    """Beats for this process's running trial and fails other processes' stale ones."""

    def __init__(self, study, interval=INTERVAL, grace=GRACE):
        self.study, self.storage = study, study._storage
        self.interval, self.grace = interval, grace
        self.trial_id = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keras-relu-heartbeat",
                                        daemon=True)
        self._thread.start()

    def beat(self, trial):
        """From now on, stamp `trial` (an `optuna.Trial`), starting at once."""
        self.trial_id = trial._trial_id
        self._stamp(self.trial_id)

    def rest(self):
        """The trial ended: no more stamps."""
        self.trial_id = None

    def close(self):
        self.rest()
        self._stop.set()

    def _stamp(self, trial_id):
        self.storage.set_trial_system_attr(trial_id, STAMP, time.time())

    def _run(self):
        while not self._stop.wait(self.interval):
            trial_id = self.trial_id
            if trial_id is None:
                continue
            try:
                self._stamp(trial_id)
            except Exception:  # the trial ended meanwhile, or the proxy went away: the
                pass  # main thread sees the latter on its next call and says so

    def fail_stale(self):
        """Fail and re-queue every RUNNING trial of another process whose stamp is older
        than `grace` s (none: its start), or whose process on this host is gone. Returns
        how many."""
        from search.engines.optuna_storage import fail_and_retry
        from search.recovery import is_dead

        now, count = time.time(), 0
        running = (optuna.trial.TrialState.RUNNING,)
        for trial in self.study.get_trials(deepcopy=False, states=running):
            if trial._trial_id == self.trial_id:
                continue
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            last = max(trial.system_attrs.get(STAMP, started), started)
            worker = trial.user_attrs.get("worker")
            if now - last <= self.grace and not is_dead(worker, started):
                continue
            reason = (f"process {worker} died" if is_dead(worker, started) else
                      f"its worker stopped (no heartbeat for {now - last:.0f} s)")
            count += fail_and_retry(self.study, trial, reason)
        return count


def optimize_with(study, objective, beat, callbacks, **options):
    """`study.optimize`; with `beat` (behind a proxy), stale trials are failed before each
    ask; a lost proxy is a `StoreLost`."""
    from search.engines.optuna_storage import store_lost

    try:
        if beat:
            beat.fail_stale()
            callbacks = [*callbacks, lambda *_: beat.fail_stale()]
        study.optimize(objective, callbacks=callbacks, **options)
    except Exception as err:
        lost = store_lost(study._storage, err)
        if lost is not None:
            raise lost from None
        raise
    finally:
        if beat:
            beat.close()
