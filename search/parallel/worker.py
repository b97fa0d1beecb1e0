"""`keras-relu worker`: one start-up for a worker of either engine.

A worker joins a study that `search.run` created: the engine gives back the job stored
with the study (settings, space, parent run), the worker loads the data, opens MLflow
and runs trials through the engine's `optimize`, like the launching process would.
"""

import contextlib
import os
import socket

from search import UsageError, recovery, runtime, signals, stores
from search.names import STORAGE_ENV
from search.noise import hide_false_alarms

START_TIMEOUT = 30  # seconds for the tracking server's first answer (commands: 5)


def run_worker(study_name, engine="optuna", storage=None, trials=10, timeout=None,
               tracking_uri=None, parent_run_id=None, backend=None, worker_id=None,
               model=None, quiet=False):
    """Join `study_name` and run `trials` of its trials (a KerasTuner worker runs until
    its chief has none left); child runs go under the search's parent run. `model`
    overrides the builder reference stored with the study (another path here); `quiet`
    drops the engine's line per trial."""
    from search import engines

    signals.honour_sigint()  # the launcher's stop, also when started as a background job
    with signals.sigterm_as_interrupt():
        signals.stop_with_launcher()  # if a launcher started it: not past the launcher
        url = _storage_url(engine, storage)
        keras = runtime.import_keras(backend)
        runtime.apply_threads()
        module = engines.load(engine)
        study, job = module.join_study(study_name, url, quiet)
        if job["settings"].get("backend") not in (None, keras.backend.backend()):
            print(f"keras-relu worker: note: the study was started on "
                  f"{job['settings']['backend']}, this worker runs {keras.backend.backend()}",
                  flush=True)
        chief = os.environ.get("KERASTUNER_TUNER_ID") == "chief"
        if chief:  # KerasTuner's oracle: serves trials, runs none
            module.optimize(study, None, None, None, n_trials=trials)
            return
        if model:
            job["settings"]["model"] = model
        with hide_false_alarms():
            _work(module, study, job, study_name, trials, timeout, tracking_uri,
                  parent_run_id or job.get("parent_run_id"),
                  worker_id or f"{socket.gethostname()}:{os.getpid()}")


def _storage_url(engine, storage):
    if engine == "kerastuner":
        if "KERASTUNER_TUNER_ID" not in os.environ:
            raise UsageError("--engine kerastuner: set KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP "
                             "and KERASTUNER_ORACLE_PORT")
        return None
    url = storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise UsageError(f"--storage is required (or ${STORAGE_ENV})")
    if "://" not in url and not os.path.isfile(url):  # Optuna would make an empty one
        raise UsageError(f"no study storage at {url}: a journal file that does not exist "
                         "(a search makes it: keras-relu search --storage PATH)")
    if url.startswith("grpc://"):
        stores.check_proxy(url)  # before the backend's import: one line in a second
    return url


def _work(module, study, job, study_name, trials, timeout, tracking_uri, parent, wid):
    import keras

    from search import sources
    from search.models import load_builder
    from search.settings import SearchSettings
    from search.space import Space
    from search.tracking import Tracker, resolve_tracking_uri

    settings = SearchSettings.from_dict(job["settings"])
    build = load_builder(settings.model, settings.reinitialize)
    data = sources.load(settings.dataset, **settings.data_options())
    uri = resolve_tracking_uri(tracking_uri or settings.tracking_uri)
    # one line in seconds, not MLflow's minutes of retries (a refused connection at once;
    # a server that tens of workers reach at once may take longer than a command's 5 s)
    stores.check_tracking_store(uri, timeout=START_TIMEOUT)
    tracker = Tracker(uri, study_name)  # the search made its experiment: looked up here
    tracker.child_tags = {"worker": wid, **({"device": os.environ["CUDA_VISIBLE_DEVICES"]}
                                            if "CUDA_VISIBLE_DEVICES" in os.environ else {})}
    own_parent = not tracker.adopt_parent(parent)
    if own_parent:  # another tracking store than the search's: this worker's own parent
        tracker.start_parent({"engine": settings.engine}, {"engine": settings.engine,
                                                           "study_name": study_name,
                                                           "kind": "worker"})
    if settings.mixed_precision:
        keras.mixed_precision.set_global_policy(runtime.mixed_policy())
    if not os.environ.get(signals.LAUNCHER_ENV):  # started by hand (again, after a lost
        closed = recovery.close_dead_runs(tracker, study, ended_only=True)  # server): runs
        if closed:  # of dead processes (running trials: Optuna's heartbeat closes theirs)
            print(f"keras-relu worker: closed {closed} run(s) left RUNNING by a process that "
                  "died", flush=True)
    try:
        module.optimize(study, Space.from_dict(job["space"]), data, settings.trial_settings(),
                        tracker, n_trials=trials, timeout=timeout, worker=wid,
                        build=build)
        tracker.flush()
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):  # SIGTERM, SIGINT: the runs' last metrics
            with contextlib.suppress(Exception):  # written before the exit (130)
                tracker.flush()
        if own_parent:
            tracker.finish_parent("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    if own_parent:
        tracker.finish_parent("FINISHED")
