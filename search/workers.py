"""Several worker processes on one Optuna study: launch, pin, watch, recover.

`keras-relu search --workers N` creates the study and the MLflow parent run, stores what a
worker needs in the study (`search` user attribute), then starts N `keras-relu worker`
processes that share the storage (a journal file locally, PostgreSQL/MySQL across machines).
`--trials` is split into per-worker quotas (`study.optimize(n_trials=...)`), so the
invocation runs exactly `--trials` trials. A worker killed mid-trial: on an RDB storage
Optuna's heartbeat fails its trial and `RetryFailedTrialCallback` re-queues it; the journal
storage has no heartbeat, so the launcher does the same when `waitpid` reports the death.
Either way the launcher closes the trial's MLflow run as FAILED and starts a replacement
worker for the rest of the quota. The storage URL reaches workers through the environment
(never argv, which `ps` shows).
"""

import os
import signal
import socket
import subprocess
import sys
import time

STORAGE_ENV = "KERAS_RELU_STORAGE"
THREADS_ENV = "KERAS_RELU_THREADS"
RESPAWNS = 3  # replacement workers per slot before the search gives up


def add_search_options(parser, positive):
    parser.add_argument("--workers", type=positive(int),
                        help="worker processes on one study (default 1, or one per --devices)")
    parser.add_argument("--devices", help="GPUs, e.g. 0,1: worker i gets CUDA_VISIBLE_DEVICES "
                                          "= device i mod count")


def add_worker_parser(commands, positive):
    w = commands.add_parser("worker", help="join an existing Optuna study (another machine)",
                            description="Run trials of a study created by `keras-relu search` "
                                        "from the settings stored in it; MLflow child runs go "
                                        "to --tracking-uri.")
    w.add_argument("--study-name", required=True)
    w.add_argument("--engine", choices=("optuna", "kerastuner"), default="optuna",
                   help="kerastuner: KERASTUNER_TUNER_ID/ORACLE_IP/ORACLE_PORT from the "
                        "environment, the project under ./mlruns/keras_tuner")
    w.add_argument("--storage", help=f"study storage URL (default: ${STORAGE_ENV})")
    w.add_argument("--trials", type=positive(int), default=10, help="trials this worker runs")
    w.add_argument("--timeout", type=positive(float), help="stop starting trials after SECONDS")
    w.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, "
                                          "else sqlite under ./mlruns)")
    w.add_argument("--parent-run-id", help="MLflow parent run (default: the search's)")
    w.add_argument("--backend", choices=("tensorflow", "jax", "torch"))
    w.add_argument("--worker-id", help="name in trials and logs (default HOST:PID)")


def thread_env(threads, backend):
    """Environment limiting a worker to `threads` CPU threads, read when the backend starts."""
    n = str(threads)
    env = {THREADS_ENV: n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
           "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": "1"}
    if backend == "jax" and threads == 1:
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                            " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    return env


def apply_threads():
    """In a worker, after importing Keras and before any op: the backend's own thread knobs."""
    import contextlib

    import keras

    threads = int(os.environ.get(THREADS_ENV, "0"))
    if threads <= 0:
        return
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    elif backend == "tensorflow":
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # already initialised: the env vars held
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)


def describe_exit(code):
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class Launcher:
    """The local worker processes of one `keras-relu search --workers N` invocation."""

    def __init__(self, study, storage_url, tracker, args):
        self.study, self.tracker, self.args = study, tracker, args
        self.rdb = "://" in storage_url
        devices = [d for d in (args.devices or "").split(",") if d.strip()]
        self.devices, self.workers = devices, args.workers
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        backend = os.environ.get("KERAS_BACKEND", "tensorflow")
        self.env = {**os.environ, **thread_env(threads, backend), STORAGE_ENV: storage_url,
                    "KERAS_BACKEND": backend}
        self.procs = {}  # slot -> (Popen, worker id, quota)
        self.respawns = {}
        self.ids = set()  # every worker id started

    def _start(self, slot, quota):
        import pathlib

        env = dict(self.env)
        if self.devices:
            env["CUDA_VISIBLE_DEVICES"] = self.devices[slot % len(self.devices)]
        root = str(pathlib.Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        env["MLFLOW_TRACKING_URI"] = self.tracker.uri  # not in argv: it may hold a password
        cmd = [sys.executable, "-m", "search.cli", "worker", "--study-name",
               self.study.study_name, "--trials", str(quota),
               "--parent-run-id", self.tracker.parent_id]
        if self.args.timeout:
            cmd += ["--timeout", str(self.args.timeout)]
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[slot] = (proc, f"{socket.gethostname()}:{proc.pid}", quota)
        self.ids.add(self.procs[slot][1])

    def run(self, on_trial):
        """Start the workers, report finished trials, recover from deaths; until all exit."""

        share, extra = divmod(self.args.trials, self.workers)
        for slot in range(self.workers):
            if share + (slot < extra):
                self._start(slot, share + (slot < extra))
        seen = {t.number for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()}
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            while self.procs:
                time.sleep(0.5)
                for slot, (proc, wid, quota) in list(self.procs.items()):
                    if proc.poll() is not None:
                        del self.procs[slot]
                        self._ended(slot, proc.returncode, wid, quota)
                for trial in self.study.get_trials(deepcopy=False):
                    if trial.state.is_finished() and trial.number not in seen:
                        seen.add(trial.number)
                        on_trial(self.study, trial)
        except BaseException as err:  # interrupted, or a worker failed: stop the others
            self.stop()
            self._close_leftovers("interrupted by the user" if isinstance(err, KeyboardInterrupt)
                                  else f"search stopped: {err}")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _ended(self, slot, code, wid, quota):
        if code == 0:
            return
        if code == 130 or code == -signal.SIGINT:
            raise KeyboardInterrupt
        if code > 0 or self.respawns.get(slot, 0) >= RESPAWNS:
            raise RuntimeError(f"worker {wid} failed ({describe_exit(code)})")
        self.respawns[slot] = self.respawns.get(slot, 0) + 1
        reason = f"worker {wid} died ({describe_exit(code)})"
        print(f"keras-relu: {reason}; its trial is retried", file=sys.stderr)
        done = self._recover(wid, reason)
        if quota - done > 0:
            self._start(slot, quota - done)

    def _recover(self, wid, reason):
        """Fail and re-queue the dead worker's running trial; its trials finished before."""
        import optuna

        from search.engines.optuna import retry_callback

        storage, state = self.study._storage, optuna.trial.TrialState
        done = 0
        for trial in self.study.get_trials(deepcopy=False):
            if trial.user_attrs.get("worker") != wid:
                continue
            if trial.state != state.RUNNING:
                done += trial.state.is_finished()
                continue
            storage.set_trial_user_attr(trial._trial_id, "reason", reason)
            close_child_run(self.tracker, trial.number, reason)
            if self.rdb:  # Optuna's heartbeat fails and retries it after the grace period
                self._await_heartbeat(trial._trial_id)
                continue
            try:
                storage.set_trial_state_values(trial._trial_id, state.FAIL)
            except RuntimeError:  # UpdateFinishedTrialError: it ended after all
                continue
            retry_callback()(self.study, storage.get_trial(trial._trial_id))
        return done

    def _await_heartbeat(self, trial_id):
        """Until Optuna's heartbeat check fails (and re-queues) the dead worker's trial, so
        that the replacement worker picks up the retry rather than a fresh trial."""
        import optuna

        while self.study._storage.get_trial(trial_id).state == optuna.trial.TrialState.RUNNING:
            optuna.storages.fail_stale_trials(self.study)
            time.sleep(1)

    def _close_leftovers(self, reason):
        """After a stop: a trial still RUNNING is failed, and any run of a trial that ended
        FAIL or stayed RUNNING (interrupted before its runner could close it) is KILLED."""
        import optuna

        state = optuna.trial.TrialState
        for trial in self.study.get_trials(deepcopy=False, states=(state.RUNNING, state.FAIL)):
            if trial.user_attrs.get("worker") not in self.ids:
                continue
            if trial.state == state.RUNNING:
                self.study._storage.set_trial_user_attr(trial._trial_id, "reason", reason)
                self.study._storage.set_trial_state_values(trial._trial_id, state.FAIL)
            close_child_run(self.tracker, trial.number, reason, "KILLED", "interrupted")

    def stop(self, grace=60):
        """SIGINT every worker (each fails its trial and KILLs its run), then wait."""
        for proc, _, _ in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace
        for proc, _, _ in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def close_child_run(tracker, number, reason, status="FAILED", state="failed"):
    """Close the still running child run of trial `number` (under the search's parent)."""
    client = tracker.client
    query = (f"tags.trial_number = '{number}' and "
             f"tags.`mlflow.parentRunId` = '{tracker.parent_id}'")
    for run in client.search_runs([tracker.experiment_id], filter_string=query):
        if run.info.status == "RUNNING":
            tracker.log(run.info.run_id, tags={"state": state, "reason": reason})
            client.set_terminated(run.info.run_id, status)


def search_spec(args, space, backend):
    """What a worker needs to run the study's trials, stored in the study."""
    from search.cli import space_as_dict

    keys = ("dataset", "samples", "features", "classes", "epochs", "batch_size", "seed",
            "objective", "mixed_precision")
    return {**{k: getattr(args, k) for k in keys}, "pruner": args.pruner or "median",
            "backend": backend, "space": space_as_dict(space)}


def space_from_dict(spec):
    """The inverse of `search.cli.space_as_dict`."""
    from search import space as spaces

    dims = []
    for fields in spec.values():
        fields = dict(fields)
        kind = getattr(spaces, fields.pop("type"))
        if fields.get("when") is not None:
            fields["when"] = (fields["when"][0], tuple(fields["when"][1]))
        if "values" in fields:
            fields["values"] = tuple(fields["values"])
        dims.append(kind(**fields))
    return spaces.Space(tuple(dims))


def run_worker(args, state):
    """`keras-relu worker`: load the study, run `--trials` of its trials, log to MLflow."""
    from search import UsageError

    if args.engine == "kerastuner":
        from search.kt_workers import run_worker as run_kerastuner_worker

        return run_kerastuner_worker(args, state)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    url = args.storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise UsageError(f"--storage is required (or ${STORAGE_ENV})")
    from search.cli import _mixed_policy, _quiet_native_logs

    with _quiet_native_logs():
        import keras
    apply_threads()
    import optuna

    from search import data as datasets
    from search.engines import optuna as engine
    from search.tracking import Tracker, mask_url, resolve_tracking_uri
    from search.trial import TrialSettings

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = engine.open_storage(url)
    try:
        spec = optuna.load_study(study_name=args.study_name, storage=storage).user_attrs["search"]
    except KeyError:
        raise UsageError(f"no study {args.study_name!r} made by `keras-relu search` in "
                         f"{mask_url(url)}") from None
    if spec["backend"] != keras.backend.backend():
        print(f"keras-relu worker: note: the study was started on {spec['backend']}, this "
              f"worker runs {keras.backend.backend()}", file=sys.stderr)
    multi = spec["objective"] == "pareto"
    study = optuna.load_study(
        study_name=args.study_name, storage=storage,
        sampler=optuna.samplers.TPESampler(seed=spec["seed"] + os.getpid()),
        pruner=optuna.pruners.NopPruner() if multi else
        engine.make_pruner(spec["pruner"], spec["epochs"]))
    data = datasets.load(spec["dataset"], spec["seed"], spec["samples"], spec["features"],
                         spec["classes"])
    tracker = Tracker(resolve_tracking_uri(args.tracking_uri), args.study_name)
    parent = args.parent_run_id or study.user_attrs.get("parent_run_id")
    from mlflow.exceptions import MlflowException

    try:
        tracker.parent_id = tracker.client.get_run(parent).info.run_id if parent else None
    except MlflowException:  # another tracking store
        pass
    if tracker.parent_id is None:  # this worker's own parent run
        state["tracker"] = tracker
        tracker.start_parent({"engine": "optuna", "storage": mask_url(url)},
                             {"engine": "optuna", "study_name": args.study_name,
                              "kind": "worker"})
    if spec["mixed_precision"]:
        keras.mixed_precision.set_global_policy(_mixed_policy())
    settings = TrialSettings(epochs=spec["epochs"], batch_size=spec["batch_size"],
                             seed=spec["seed"])
    wid = args.worker_id or f"{socket.gethostname()}:{os.getpid()}"
    try:
        engine.optimize(study, space_from_dict(spec["space"]), data, settings, tracker,
                        args.trials, args.timeout, worker=wid)
    finally:
        tracker.flush()
    if state.get("tracker"):
        tracker.finish_parent("FINISHED")
    return 0


def run_search(study, storage_url, args, space, tracker, on_trial):
    """`keras-relu search --workers N` (Optuna): store the spec, launch, watch."""
    import keras

    study.set_user_attr("search", search_spec(args, space, keras.backend.backend()))
    study.set_user_attr("parent_run_id", tracker.parent_id)
    Launcher(study, storage_url, tracker, args).run(on_trial)
