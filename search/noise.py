"""What libraries print that a user did not ask for, kept out of the way.

Native libraries print on file descriptor 2, below Python's `sys.stderr`. TensorFlow
prints its start-up lines on import, and on any Keras backend Keras imports it (to seed
it in `keras.utils.set_random_seed`): `quiet_native_logs` hides an import's lines.
TensorFlow 2.21 with oneDNN also logs a false alarm each time it optimises a graph in
which a Dense layer's bias add feeds an `Add` and then a ReLU (a residual block): "Node
.../Relu has an empty op name" at ERROR level, and then runs the graph all the same.
`TF_CPP_MIN_LOG_LEVEL=3` (what keras-relu sets unless told otherwise) hides it with every
other line; when TensorFlow logs more, `hide_false_alarms` drops exactly those lines.
MLflow draws a progress bar for every artifact download (a model load): `quiet_downloads`.
"""

import contextlib
import os
import re
import sys
import tempfile
import threading

FALSE_ALARMS = ("has an empty op name", "does not specify an operation",
                "No registered '' OpKernel")
_LOG_LINE = re.compile(rb"^[IWEF]\d{4} ")  # absl's prefix: severity, MMDD
_log_level = [None]  # the TF_CPP_MIN_LOG_LEVEL TensorFlow started with (see import_quietly)


@contextlib.contextmanager
def quiet_native_logs():
    """Hide what native libraries print on stderr while importing (TensorFlow's INFO
    lines); on an error, show it after all."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_quietly():
    """Import Keras with its start-up lines hidden (on the TensorFlow backend, TensorFlow's
    too); TensorFlow logs at `TF_CPP_MIN_LOG_LEVEL`, 3 (errors hidden too) unless set."""
    if "tensorflow" in sys.modules:  # imported before us, at the level of that moment
        _log_level[0] = _level(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_native_logs():
        import keras
    _note_tensorflow()
    return keras


def seed_quietly(seed):
    """`keras.utils.set_random_seed(seed)`. On any backend it seeds TensorFlow too, where
    installed, and its first call imports it: that import's lines are hidden. (Importing
    TensorFlow up front instead, before KerasTuner, crashed JAX processes on Ctrl-C.)"""
    import importlib.util

    import keras

    if "tensorflow" in sys.modules or not importlib.util.find_spec("tensorflow"):
        keras.utils.set_random_seed(seed)
        return
    with quiet_native_logs():
        keras.utils.set_random_seed(seed)
    _note_tensorflow()


def _note_tensorflow():
    if "tensorflow" in sys.modules and _log_level[0] is None:
        _log_level[0] = _level(os.environ["TF_CPP_MIN_LOG_LEVEL"])


def _level(text):
    try:
        return int(text)
    except ValueError:
        return 0


@contextlib.contextmanager
def hide_false_alarms():
    """Within the block, drop TensorFlow's `FALSE_ALARMS` lines (and their continuation
    lines) from file descriptor 2 and pass everything else on as it comes. Nothing is
    changed when TensorFlow hides errors anyway (level 3) or is not loaded."""
    level = _log_level[0]
    if level is None or level >= 3 or "tensorflow" not in sys.modules:
        yield
        return
    sys.stderr.flush()
    out = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    forward = threading.Thread(target=_forward, args=(read, out), daemon=True,
                               name="keras-relu-stderr")
    forward.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(out, 2)  # the pipe's last writer closes (a child may still hold it)
        forward.join(timeout=5)


def _forward(read, out):
    """Copy the pipe to `out`, a line at a time for absl's log lines; a partial line that
    is not one (a progress bar's `\\r` update) passes at once."""
    pending, dropping = b"", False
    try:
        while chunk := os.read(read, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if dropping and (line.startswith(b"\t") or not line.strip()):
                    continue  # the alarm's continuation lines
                dropping = any(alarm.encode() in line for alarm in FALSE_ALARMS)
                if not dropping:
                    os.write(out, line + b"\n")
            if pending and not (_LOG_LINE.match(pending) or pending.startswith(b"\t")):
                os.write(out, pending)
                pending = b""
        if pending:
            os.write(out, pending)
    finally:
        os.close(read)
        os.close(out)


@contextlib.contextmanager
def quiet_downloads():
    """No MLflow artifact-download progress bar inside the block (unless the user has set
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR): loading a model is not news."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if name in os.environ:
        yield
        return
    os.environ[name] = "false"
    try:
        yield
    finally:
        os.environ.pop(name, None)
