"""KerasTuner in parallel: its own chief/worker mode over the shared project directory.

`keras-relu search --engine kerastuner --workers N` starts KerasTuner's chief (the oracle,
served over gRPC on KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT) and N workers
(`KERASTUNER_TUNER_ID=tuner0..`), each a `keras-relu worker --engine kerastuner` process
that runs trials through the shared trial runner and logs MLflow child runs. The settings a
worker needs are in `worker.json` in the project directory.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from search.workers import (
    STORAGE_ENV,
    describe_exit,
    search_spec,
    space_from_dict,
    thread_env,
)

SPEC_FILE = "worker.json"
IP = "127.0.0.1"


def free_port():
    with socket.socket() as sock:
        sock.bind((IP, 0))
        return sock.getsockname()[1]


def run_search(study, args, space, tracker, on_trial):
    """The chief plus `args.workers` workers on `study`'s project; waits for the workers."""
    import pathlib

    import keras

    spec = {**search_spec(args, space, keras.backend.backend()), "tuner": study.tuner_name}
    (study.directory / SPEC_FILE).write_text(json.dumps(spec))
    before = {r.number for r in study.trials}
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    env = {**os.environ, **thread_env(threads, spec["backend"]), "KERAS_BACKEND": spec["backend"],
           "KERASTUNER_ORACLE_IP": IP, "KERASTUNER_ORACLE_PORT": str(free_port()),
           "MLFLOW_TRACKING_URI": tracker.uri,
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    env.pop(STORAGE_ENV, None)
    devices = [d for d in (args.devices or "").split(",") if d]
    cmd = [sys.executable, "-m", "search.cli", "worker", "--engine", "kerastuner",
           "--study-name", study.tuner.project_name, "--parent-run-id", tracker.parent_id]

    def start(tuner_id, extra=(), device=None):
        env_i = {**env, "KERASTUNER_TUNER_ID": tuner_id}
        if device is not None:
            env_i["CUDA_VISIBLE_DEVICES"] = device
        quiet = {"stderr": subprocess.DEVNULL} if tuner_id == "chief" else {}  # terminated
        return subprocess.Popen([*cmd, *extra], env=env_i, cwd=os.getcwd(), **quiet,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                start_new_session=True)

    chief = start("chief", ["--trials", str(args.trials)])
    workers = [start(f"tuner{i}", device=devices[i % len(devices)] if devices else None)
               for i in range(args.workers)]
    try:
        while any(w.poll() is None for w in workers):
            if chief.poll():  # 0: it served every trial and left (KerasTuner's exit_chief)
                raise RuntimeError(f"KerasTuner chief ended early ({describe_exit(chief.returncode)})")
            time.sleep(0.5)
        bad = [w.returncode for w in workers if w.returncode]
        if bad:
            raise RuntimeError(f"a KerasTuner worker failed ({describe_exit(bad[0])})")
    except BaseException:  # interrupted, or a process failed: stop the workers first
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGINT)
        for w in workers:
            w.wait(60)
        raise
    finally:
        if chief.poll() is None:  # its oracle saved every ended trial; it would idle 20 s
            chief.terminate()
            chief.wait(30)
    study.tuner.reload()
    for record in study.trials:
        if record.number not in before:
            on_trial(study, record)


def run_worker(args, state):
    """`keras-relu worker --engine kerastuner`: the chief serves, a tuner runs trials."""
    from search import UsageError
    from search.cli import _mixed_policy, _quiet_native_logs
    from search.workers import _raise_interrupt, apply_threads

    signal.signal(signal.SIGTERM, _raise_interrupt)
    if "KERASTUNER_TUNER_ID" not in os.environ:
        raise UsageError("--engine kerastuner: set KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP "
                         "and KERASTUNER_ORACLE_PORT")
    with _quiet_native_logs():
        import keras
    apply_threads()
    from search import data as datasets
    from search.engines import kerastuner as engine
    from search.tracking import Tracker, resolve_tracking_uri
    from search.trial import TrialSettings

    folder = engine.project_dir(args.study_name)
    try:
        spec = json.loads((folder / SPEC_FILE).read_text())
    except OSError:
        raise UsageError(f"no {SPEC_FILE} in {folder}: start the study with "
                         "`keras-relu search --engine kerastuner --workers N`") from None
    space = space_from_dict(spec["space"])
    study = engine.open_study(spec["tuner"], args.study_name, space, spec["dataset"],
                              spec["epochs"], spec["seed"])
    chief = os.environ["KERASTUNER_TUNER_ID"] == "chief"
    data = tracker = None
    if not chief:
        data = datasets.load(spec["dataset"], spec["seed"], spec["samples"], spec["features"],
                             spec["classes"])
        tracker = Tracker(resolve_tracking_uri(args.tracking_uri), args.study_name)
        tracker.parent_id = args.parent_run_id
        if spec["mixed_precision"]:
            keras.mixed_precision.set_global_policy(_mixed_policy())
    settings = TrialSettings(epochs=spec["epochs"], batch_size=spec["batch_size"],
                             seed=spec["seed"])
    try:
        engine.optimize(study, space, data, settings, tracker,
                        n_trials=args.trials if chief else None)
    finally:
        if tracker:
            tracker.flush()
    return 0
