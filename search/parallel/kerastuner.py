"""KerasTuner in parallel: its own chief/worker mode over the shared project directory.

`search.run(engine="kerastuner", workers=N)` starts KerasTuner's chief (the oracle, served
over gRPC on KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT) and N workers
(`KERASTUNER_TUNER_ID=tuner0..`), each a `keras-relu worker --engine kerastuner` process
that runs trials through the shared trial runner and logs MLflow child runs. The job a
worker needs is `worker.json` in the project directory (`search.engines.kerastuner`).
"""

import os
import socket
import time

from search import runtime
from search.names import STORAGE_ENV

IP = "127.0.0.1"


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
    workers = [start(f"tuner{i}", device=devices[i % len(devices)] if devices else None)
               for i in range(settings.worker_count)]
    try:
        while any(w.poll() is None for w in workers):
            if chief.poll():  # 0: it served every trial and left (KerasTuner's exit_chief)
                raise RuntimeError("KerasTuner chief ended early "
                                   f"({runtime.describe_exit(chief.returncode)})")
            time.sleep(0.5)
        bad = [w.returncode for w in workers if w.returncode]
        if bad:
            raise RuntimeError(f"a KerasTuner worker failed ({runtime.describe_exit(bad[0])})")
    except BaseException:  # interrupted, or a process failed: stop the workers first
        runtime.stop(workers)
        raise
    finally:
        if chief.poll() is None:  # its oracle saved every ended trial; it would idle 20 s
            chief.terminate()
            chief.wait(30)
    study.tuner.reload()
    for record in study.trials:
        if record.number not in before:
            on_trial(study, record)
