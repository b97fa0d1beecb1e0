"""Process-level helpers shared by the search, its launchers and its workers.

Keras' quiet import (`search.noise`), the mixed-precision policy, CPU thread limits,
device lists, and starting and stopping worker processes (how they stop: `search.signals`).
Written once, used by both launchers (`search.parallel.optuna`, `search.parallel.kerastuner`).
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import sys

from search import UsageError
from search.signals import LAUNCHER_ENV

THREADS_ENV = "KERAS_RELU_THREADS"
# TensorFlow keeps every fit's traced graphs (a Python/C++ reference cycle that gc cannot
# break; tf-keras#286), about 6 MiB a trial: a worker runs this many, then a fresh one.
TENSORFLOW_TRIALS_PER_PROCESS = 25
# Past this many trials a search of one process is better off in renewed workers: the
# growth is then more than the launcher's own ~500 MiB (benchmarks/bench_search_memory.py).
TENSORFLOW_ONE_PROCESS_TRIALS = 100
ROOT = str(pathlib.Path(__file__).resolve().parent.parent)  # holds the `search` package


def import_keras(backend=None):
    """Keras on `backend` (set before the first import), imported quietly; TensorFlow too
    where it is installed (see `search.noise`)."""
    from search.noise import import_quietly

    if backend:
        os.environ["KERAS_BACKEND"] = backend
    keras = import_quietly()
    if backend and keras.backend.backend() != backend:
        raise UsageError(f"backend {backend}: Keras already runs on {keras.backend.backend()}")
    return keras


def spread_seed(seed, salt=0):
    """A sampler seed in [1, 2**31 - 1) from the user's `seed` (and a `salt`: a resume's
    trial count, a worker's pid), far from every other's. KerasTuner's seed state counts
    up by one per sampled value, so seeds 1 and 2 fell into step as soon as one trial drew
    one value more; hashed seeds start ~2**30 apart, and a search draws a few thousand."""
    import hashlib

    digest = hashlib.sha256(f"keras-relu:{seed}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 2) + 1


def process_id():
    """`HOST:PID` of this process: how trials and runs name the process that ran them."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def has_gpu():
    """Whether the active Keras backend computes on a GPU (by default)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
        if backend == "jax":
            import jax

            return jax.default_backend() == "gpu"
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_logical_devices("GPU"))
    except Exception:  # a backend that cannot list its devices computes on the CPU
        return False
    return False


def mixed_policy():
    """`mixed_float16` on a GPU, else `mixed_bfloat16` (what CPUs compute fast)."""
    return "mixed_float16" if has_gpu() else "mixed_bfloat16"


# Processes that share a GPU (the launcher and its workers, or two workers on one device)
# each take only what they use: JAX would take 75% of every visible GPU at its first
# operation, TensorFlow all of it.
SHARED_GPU_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def share_gpus():
    """In a launcher, before its backend first computes: allocate GPU memory as used
    (`SHARED_GPU_ENV`, where not set already), so its workers find the GPU free."""
    for key, value in SHARED_GPU_ENV.items():
        os.environ.setdefault(key, value)


def parse_devices(text):
    """`"0,1"` -> `["0", "1"]`: blanks and empty entries dropped, order kept; an entry
    that is neither a GPU index nor a GPU/MIG UUID is a `UsageError`."""
    devices = [d.strip() for d in (text or "").split(",") if d.strip()]
    for device in devices:
        if not (device.isdigit() or device.startswith(("GPU-", "MIG-"))):
            raise UsageError(f"--devices: {device!r} is not a GPU index or UUID "
                             "(e.g. --devices 0,1)")
    if text is not None and str(text).strip() and not devices:
        raise UsageError(f"--devices {text!r} names no device")
    return devices


def gpu_count():
    """The GPUs the Keras backend sees here (0 without any, or on failure)."""
    import keras

    try:
        if keras.backend.backend() == "torch":  # Keras' distribution API lacks torch
            import torch

            return torch.cuda.device_count()
        return len(keras.distribution.list_devices("gpu"))
    except Exception:  # JAX raises when it has no GPU platform
        return 0


def check_devices(text):
    """Warn when `--devices` names GPUs that the backend does not see here (the workers
    would run on the CPU, or share the GPUs there are)."""
    import warnings

    indices = [int(d) for d in parse_devices(text) if d.isdigit()]
    if not indices:
        return
    count = gpu_count()
    missing = [i for i in indices if i >= count]
    if missing:
        import keras

        seen = "no GPU" if count == 0 else f"{count} GPU(s)"
        warnings.warn(f"--devices {text}: Keras on {keras.backend.backend()} sees {seen} "
                      f"here (no GPU {', '.join(map(str, missing))}); "
                      + ("the workers run on the CPU" if count == 0 else
                         "those workers run on the CPU"), stacklevel=2)


def worker_count(workers, devices):
    """Worker processes: as asked, else one per device, else one."""
    return workers or len(parse_devices(devices)) or 1


def trials_per_process(limit, backend):
    """Trials one worker process runs before a fresh one takes over: `limit` as given,
    else `TENSORFLOW_TRIALS_PER_PROCESS` on TensorFlow, else None (no limit)."""
    if limit:
        return limit
    return TENSORFLOW_TRIALS_PER_PROCESS if backend == "tensorflow" else None


def renews_one_process(trials, limit, backend):
    """Whether a search of one process runs its trials in a renewed worker instead: when
    `limit` (trials per process) is given and below `trials`, or on TensorFlow past
    `TENSORFLOW_ONE_PROCESS_TRIALS`."""
    if limit:
        return trials > limit
    return backend == "tensorflow" and trials > TENSORFLOW_ONE_PROCESS_TRIALS


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


def worker_env(workers, backend, tracking_uri):
    """The environment of a local worker process: this one's, with its share of the cores,
    GPU memory taken as used (`SHARED_GPU_ENV`, unless set), the backend, the tracking URI
    (never in argv: `ps` shows argv) and this package."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    return {**SHARED_GPU_ENV, **os.environ, **thread_env(threads, backend),
            "KERAS_BACKEND": backend, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": path,
            LAUNCHER_ENV: str(os.getpid())}  # it stops when this process dies


def worker_command(*args):
    """The command line of `keras-relu worker ARGS` in this Python."""
    return [sys.executable, "-m", "search.cli", "worker", *args]


def spawn(cmd, env, device=None, quiet_stdout=False, quiet_stderr=False):
    """Start a worker in its own session (a Ctrl-C in the terminal reaches only the
    launcher, which stops the workers itself); `device` pins it to one GPU."""
    if device is not None:
        env = {**env, "CUDA_VISIBLE_DEVICES": device}
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                            stdout=subprocess.DEVNULL if quiet_stdout else None,
                            stderr=subprocess.DEVNULL if quiet_stderr else None)


def stop(procs, grace=60):
    """SIGINT every running process (each fails its trial and closes its run), wait up to
    `grace` seconds, then SIGKILL what is left."""
    import time

    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def describe_exit(code):
    """`exit status 1`, or `killed by SIGKILL` for a negative Popen return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
