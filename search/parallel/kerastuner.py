"""KerasTuner in parallel: its own chief/worker mode over the shared project directory.

`search.run(engine="kerastuner", workers=N)` starts KerasTuner's chief (the oracle, served
over gRPC on KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT) and N workers
(`KERASTUNER_TUNER_ID=tuner0..`), each a `keras-relu worker --engine kerastuner` process
that runs trials through the shared trial runner and logs MLflow child runs. The job a
worker needs is `worker.json` in the project directory (`search.engines.kerastuner`).
"""

import os
import signal
import socket
import sys
import time

from search import recovery, runtime
from search.names import STORAGE_ENV

IP = "127.0.0.1"
RESPAWNS = 3  # replacement workers per worker slot before the search gives up


def free_port():
    with socket.socket() as sock:
        sock.bind((IP, 0))
        return sock.getsockname()[1]


def launch(study, settings, tracker, on_trial):
    """The chief plus `settings.worker_count` workers on `study`'s project; waits for the
    workers, then reports the trials they ran."""
    before = {r.number for r in study.trials}
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    env = {**runtime.worker_env(settings.worker_count, backend, tracker.uri),
           "KERASTUNER_ORACLE_IP": IP, "KERASTUNER_ORACLE_PORT": str(free_port())}
    env.pop(STORAGE_ENV, None)
    devices = runtime.parse_devices(settings.devices)
    args = ["--engine", "kerastuner", "--study-name", study.tuner.project_name,
            "--parent-run-id", tracker.parent_id]

    def start(tuner_id, extra=(), device=None):
        return runtime.spawn(runtime.worker_command(*args, *extra),
                             {**env, "KERASTUNER_TUNER_ID": tuner_id}, device,
                             quiet_stdout=True,  # the chief is terminated at the end:
                             quiet_stderr=tuner_id == "chief")  # its last words are noise

    chief = start("chief", ["--trials", str(settings.trials)])
    device = {f"tuner{i}": devices[i % len(devices)] if devices else None
              for i in range(settings.worker_count)}
    workers = {tuner_id: start(tuner_id, device=device[tuner_id]) for tuner_id in device}
    try:
        _watch(chief, workers, lambda tuner_id: start(tuner_id, device=device[tuner_id]),
               tracker)
    except BaseException:  # interrupted, or a process failed: stop the workers first
        runtime.stop(list(workers.values()))
        raise
    finally:
        if chief.poll() is None:  # its oracle saved every ended trial; it would idle 20 s
            chief.terminate()
            chief.wait(30)
    study.tuner.reload()
    mine = _trial_ids(tracker)  # another search on the study at the same time ran the rest
    for record in study.trials:
        if record.number not in before and record.number in mine:
            on_trial(study, record)


def _watch(chief, workers, restart, tracker):
    """Until every worker has exited. A worker killed by a signal is replaced by one with
    the same KERASTUNER_TUNER_ID: the chief hands it the dead one's trial again (KerasTuner
    gives a tuner id its ongoing trial), and the dead attempt's run is closed FAILED."""
    respawns = 0
    while True:
        if chief.poll():  # 0: it served every trial and left (KerasTuner's exit_chief)
            raise RuntimeError("KerasTuner chief ended early "
                               f"({runtime.describe_exit(chief.returncode)})")
        for tuner_id, proc in list(workers.items()):
            code = proc.poll()
            if code is None or code >= 0 or code == -signal.SIGINT:
                continue
            if respawns >= RESPAWNS * len(workers):
                raise RuntimeError(f"a KerasTuner worker failed ({runtime.describe_exit(code)})")
            respawns += 1
            who = f"{socket.gethostname()}:{proc.pid}"
            print(f"keras-relu: worker {who} died ({runtime.describe_exit(code)}); its trial "
                  "is retried", file=sys.stderr, flush=True)
            recovery.close_dead_runs(tracker, processes={who})
            workers[tuner_id] = restart(tuner_id)
        if all(w.poll() is not None for w in workers.values()):
            break
        time.sleep(0.5)
    bad = [w.returncode for w in workers.values() if w.returncode]
    if bad:
        if -signal.SIGINT in bad or 130 in bad:
            raise KeyboardInterrupt
        raise RuntimeError(f"a KerasTuner worker failed ({runtime.describe_exit(bad[0])})")


def _trial_ids(tracker):
    """The KerasTuner trial ids that have a child run under this search's parent run."""
    tracker.flush()
    query = f"tags.`mlflow.parentRunId` = '{tracker.parent_id}'"
    found = tracker.client.search_runs([tracker.experiment_id], filter_string=query,
                                       max_results=50000)
    return {int(r.data.tags["trial_id"]) for r in found if r.data.tags.get("trial_id", "").isdigit()}
