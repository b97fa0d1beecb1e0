"""Issue #24 in one process: passwords in tracebacks and query strings, npz data identified
by content, a web server that is not MLflow, a misspelt space file, one PostgreSQL
database for both stores, a worker joining a plain search, control trials re-queued,
stops deferred while the stores are written, and the cosmetic items. Each test names
its item; the multi-process ones are in tests/test_stops_two.py."""

import gc
import http.server
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import keras
import numpy as np
import optuna
import pytest
from conftest import BACKEND, mlflow_runs, pg_tables, search_logic

import search
import search.trial
from search import data as datasets
from search import signals
from search.cli import main
from search.engines import optuna as engine
from search.identity import data_identity, same_data
from search.report import TrialSummary, one_per_control
from search.secrets import MaskedStream, MaskingFilter, mask_text
from search.settings import SearchSettings
from search.space import default_space
from search.tracking import default_tracking_uri

FAST = ["--fix=depth=1", "--fix=width=16", "--batch-size=128", "--pruner=none"]
State = optuna.trial.TrialState


def _no_model(*args, **kwargs):
    raise AssertionError("a model was built for bad input")


def _one_line(capsys, words):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    return err


# -- item 1: tracebacks in log records; everything a command prints ---------------------

def test_a_traceback_in_a_log_record_is_masked_item_1():
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.addFilter(MaskingFilter())
    log = logging.getLogger("kr-test-mask")
    log.addHandler(handler)
    try:
        raise ConnectionError("API request to http://u:SECRET@127.0.0.1:5/api failed")
    except ConnectionError:
        log.warning("Trial 3 failed", exc_info=True)  # as Optuna logs a failed trial
    finally:
        log.removeHandler(handler)
    text = sink.getvalue()
    assert "Traceback" in text and "http://u:***@127.0.0.1:5/api" in text
    assert "SECRET" not in text


def test_what_a_command_prints_is_masked_even_in_pieces_item_1():
    sink = io.StringIO()
    stream = MaskedStream(sink)
    for piece in ("see http://bob:pa", "ss@host:5000/ and ", "pg://h/db?pass", "word=X1&a=1\n",
                  "100%|####| 6/6\r"):
        stream.write(piece)
    stream.flush()
    assert sink.getvalue() == ("see http://bob:***@host:5000/ and pg://h/db?password=***&a=1\n"
                               "100%|####| 6/6\r")


# -- item 5: a password in the query string ---------------------------------------------

@pytest.mark.parametrize("url, shown", [
    ("postgresql://postgres@127.0.0.1:5432/db?password=X9", "postgresql://postgres@127.0.0.1:5432/db?password=***"),
    ("mysql+pymysql://me@h/db?charset=utf8&PASSWORD=X9&x=1", "mysql+pymysql://me@h/db?charset=utf8&PASSWORD=***&x=1"),
    ("mssql+pyodbc://h/db?driver=x;pwd=X9", "mssql+pyodbc://h/db?driver=x;pwd=***"),
    ("text 'sqlite:///a.db?password=X9' end", "text 'sqlite:///a.db?password=***' end"),
])
def test_a_query_string_password_is_masked_item_5(url, shown):
    assert mask_text(url) == shown
    settings = SearchSettings(storage=url).to_dict()
    assert settings["storage"] is None  # what a worker needs is stored without it


# -- item 2: an npz file is its content ---------------------------------------------------

def _small_digits(rows=300):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x[:rows], y[:rows]


def test_an_npz_identity_is_its_content_read_cheaply_item_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = _small_digits()
    np.savez("a.npz", x_train=x, y_train=y)
    np.savez_compressed("b.npz", x_train=x, y_train=y)
    same = data_identity("npz:a.npz")
    assert same.startswith("npz content ") and len(same) == len("npz content ") + 12
    assert data_identity(f"npz:{tmp_path / 'a.npz'}") == same == data_identity("npz:./b.npz")
    y[150] = (y[150] + 1) % 10  # one label in the middle
    np.savez("a.npz", x_train=x, y_train=y)
    assert data_identity("npz:a.npz") != same
    # A study made before identities recorded the path: the file there stands for it.
    assert same_data("npz:./a.npz", data_identity("npz:a.npz"))
    assert not same_data("npz:./a.npz", same) and not same_data("npz:gone.npz", same)
    # No array byte is read: one flipped in the middle of x_train (its zip CRC-32 left as
    # it was) leaves the identity as it is, and loading the file is what refuses it.
    before = data_identity("npz:a.npz")
    raw = bytearray((tmp_path / "a.npz").read_bytes())
    magic = raw.find(b"\x93NUMPY", raw.find(b"x_train.npy"))  # its .npy header, v1.0
    raw[magic + 10 + int.from_bytes(raw[magic + 8:magic + 10], "little") + x.nbytes // 2] ^= 0xFF
    (tmp_path / "a.npz").write_bytes(bytes(raw))
    assert data_identity("npz:a.npz") == before
    with pytest.raises(search.UsageError, match="not a readable npz file"):
        datasets.load("npz:a.npz")


@search_logic("jax")
def test_a_rewritten_npz_file_is_refused_and_another_path_to_it_accepted_item_2(workdir,
                                                                                capsys):
    x, y = _small_digits()
    np.savez(workdir / "data.npz", x_train=x, y_train=y)
    args = ["--trials", "1", "--epochs", "1", *FAST, "--study-name", "npz"]
    assert main(["search", "--dataset", "npz:./data.npz", *args]) == 0
    assert main(["search", "--dataset", f"npz:{workdir / 'data.npz'}", *args]) == 0
    assert "study 'npz': 1 new trials, 2 in all" in capsys.readouterr().out
    np.savez(workdir / "data.npz", x_train=x, y_train=y % 3)  # 3 classes now, not 10
    assert main(["search", "--dataset", "npz:data.npz", *args]) == 2
    _one_line(capsys, "study 'npz' was run on other data (npz content ")
    study = optuna.load_study(study_name="npz", storage=engine.open_storage())
    assert [t.state for t in study.trials] == [State.COMPLETE] * 2


# -- item 4: a web server that is not MLflow ---------------------------------------------

class _Status(http.server.BaseHTTPRequestHandler):
    status = 404

    def do_GET(self):
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>hello</html>")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, words", [
    (404, "is not an MLflow tracking server (HTTP 404"),
    (200, "is not an MLflow tracking server (no JSON"),
    (401, "refused the credentials (HTTP 401"),
])
def test_a_web_server_that_is_not_mlflow_is_refused_before_anything_item_4(workdir, capsys,
                                                                          monkeypatch,
                                                                          status, words):
    monkeypatch.setattr(search.trial, "build_default", _no_model)
    handler = type("Handler", (_Status,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://bob:pw9@127.0.0.1:{server.server_address[1]}/"
    try:
        assert main(["search", "--trials", "1", "--tracking-uri", url]) == 2
    finally:
        server.shutdown()
    err = _one_line(capsys, words)
    assert "http://bob:***@127.0.0.1" in err and "pw9" not in err
    assert not (workdir / "mlruns").exists()  # no study, no control trials, no store


# -- item 6: a misspelt dimension ----------------------------------------------------------

def test_a_misspelt_dimension_of_the_built_in_model_is_refused_item_6(workdir, capsys,
                                                                      monkeypatch):
    monkeypatch.setattr(search.trial, "build_default", _no_model)
    (workdir / "s.yaml").write_text("activaton: [relu]\n")
    assert main(["search", "--space", "s.yaml", "--trials", "1"]) == 2
    _one_line(capsys, "space file s.yaml: unknown search dimension 'activaton' (did you mean "
                      "activation?); valid: activation, initializer,")
    with pytest.raises(search.UsageError, match=r"'widht' \(did you mean width\?\)"):
        search.run(space={"widht": [16]}, trials=1, progress=False)
    assert not (workdir / "mlruns").exists()


# -- item 7: one PostgreSQL database for both ------------------------------------------------

def test_one_postgresql_database_for_both_stores_is_refused_before_anything_item_7(
        workdir, capsys, monkeypatch, pg_new_database):
    monkeypatch.setattr(search.trial, "build_default", _no_model)
    url = pg_new_database()
    for storage in (url, url.replace("127.0.0.1", "localhost").replace("postgresql:",
                                                                       "postgresql+psycopg2:")):
        assert main(["search", "--trials", "1", "--storage", storage, "--tracking-uri",
                     url]) == 2
        _one_line(capsys, "are one database; the study and the runs need two")
    assert pg_tables(url) == []
    # Made earlier by another program (or by name through an alias): the tables say so.
    studies, runs = pg_new_database(), pg_new_database()
    engine.open_storage(studies)
    assert main(["search", "--trials", "1", "--storage", runs, "--tracking-uri", studies]) == 2
    _one_line(capsys, "holds an Optuna study storage; the study and the runs need two")
    assert pg_tables(runs) == []


# -- item 8: a worker joins a plain search ---------------------------------------------------

@search_logic("torch")
def test_a_worker_joins_a_plain_search_or_says_why_not_item_8(workdir, capsys):
    args = ["--trials", "1", "--epochs", "1", *FAST, "--no-controls"]
    assert main(["search", "--study-name", "w1", *args]) == 0
    assert main(["worker", "--study-name", "w1", "--storage", "mlruns/optuna.journal",
                 "--trials", "1", "--quiet"]) == 0
    study = optuna.load_study(study_name="w1", storage=engine.open_storage())
    assert [t.state for t in study.trials] == [State.COMPLETE] * 2
    assert study.trials[1].user_attrs["worker"] == f"{socket.gethostname()}:{os.getpid()}"
    _, parents, children = mlflow_runs(default_tracking_uri(workdir), "w1")
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}

    x, y = _small_digits()  # arrays in a process's memory: no worker can load them
    search.run(data=(x, y), study_name="mem", trials=1, epochs=1, batch_size=128,
               fix=["depth=1", "width=16"], controls=False, progress=False)
    capsys.readouterr()
    assert main(["worker", "--study-name", "mem", "--storage", "mlruns/optuna.journal"]) == 2
    _one_line(capsys, "a worker cannot join study 'mem': its data are arrays in the memory")


# -- item 9: control trials that never ran to their end -------------------------------------

def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_resume_queues_again_the_controls_that_never_ran_to_their_end_item_9():
    study = optuna.create_study(direction="maximize")
    space = default_space()
    engine.enqueue_controls(study, space)
    relu = study.ask()  # ran to its end
    relu.set_user_attr(engine.OUTCOME, "complete")
    study.tell(relu, 0.5)
    study.tell(study.ask(), state=State.FAIL)  # sugar_bsilu: interrupted
    failed = study.ask()  # relu+residual: failed by itself (a NaN loss), not again
    failed.set_user_attr(engine.OUTCOME, "failed")
    study.tell(failed, state=State.FAIL)
    study.ask().set_user_attr("worker", f"{socket.gethostname()}:{_dead_pid()}")  # relu+redo
    labels = [t.user_attrs["control"] for t in study.trials]
    assert labels == ["relu", "sugar_bsilu", "relu+residual", "relu+redo", "relu+rai"]
    engine.enqueue_controls(study, space)
    waiting = [t.user_attrs["control"] for t in study.get_trials(states=(State.WAITING,))]
    assert waiting == ["relu+rai", "sugar_bsilu", "relu+redo"]

    plain = optuna.create_study(direction="maximize")  # made with --no-controls
    plain.tell(plain.ask(), state=State.FAIL)
    engine.enqueue_controls(plain, space)
    assert len(plain.trials) == 1


def test_the_report_lists_each_control_once_item_9():
    def summary(number, control, state, value=None):
        return TrialSummary(number, state, {}, value, control=control)

    shown = one_per_control([summary(0, "relu", "complete", 0.4), summary(1, "redo", "failed"),
                             summary(2, None, "complete"), summary(3, "redo", "complete", 0.6),
                             summary(4, "rai", "failed"), summary(5, "relu", "failed")])
    assert [(t.control, t.number) for t in shown] == [("relu", 0), ("redo", 3), ("rai", 4)]


# -- item 10: a stop while the stores are written --------------------------------------------

def test_a_sigterm_while_the_stores_are_written_waits_for_the_block_item_10():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals.sigterm_as_interrupt(), signals.deferred_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("the study")  # not cut short
            done.append("the parent run")
    assert done == ["the study", "the parent run"]


class _StopInsideTheStep(keras.callbacks.Callback):
    """A SIGINT in the second batch that surfaces as TensorFlow's C++ step let it out once
    in CI: as `SystemError: ... bad argument to internal function`."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt:
                raise SystemError("Objects/listobject.c:338: bad argument to internal function")


TINY = {"activation": "relu", "initializer": "he_normal", "batch_norm": False, "dropout": 0.0,
        "clipping": "none", "schedule": "constant", "learning_rate": 1e-3, "optimizer": "adam",
        "depth": 1, "width": 16}


@search_logic("tensorflow")
def test_a_stop_while_the_trials_run_is_made_closes_that_run_killed(tmp_path):
    """The launcher's death (SIGHUP) landed in a worker while it made a trial's run: the
    stop waited for the run, then was raised before the code that closes it (CI, JAX)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = search.tracking.Tracker(uri, "stops")
    tracker.start_parent({"engine": "optuna"}, {})
    make_run = tracker.start_child

    def stopped_while_made(*args, **kwargs):
        run = make_run(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # the deferred stop is raised at the block's end, not here
        return run

    tracker.start_child = stopped_while_made
    with signals.sigterm_as_interrupt(), pytest.raises(KeyboardInterrupt):
        search.trial.run_trial(TINY, datasets.load("digits"),
                               search.trial.TrialSettings(epochs=1, batch_size=128),
                               number=0, engine="optuna", tracker=tracker)
    tracker.flush()
    _, _, (child,) = mlflow_runs(uri, "stops")
    assert (child.info.status, child.data.tags["state"]) == ("KILLED", "interrupted")
    assert "val_accuracy" not in child.data.metrics  # stopped before its fit


@search_logic("tensorflow")
def test_a_stop_that_surfaces_as_another_error_stops_the_trial_as_interrupted(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = search.tracking.Tracker(uri, "stops")
    tracker.start_parent({"engine": "optuna"}, {})
    with signals.sigterm_as_interrupt():
        assert signals.stop_in_flight() is None
        with pytest.raises(KeyboardInterrupt) as stopped:
            search.trial.run_trial(TINY, datasets.load("digits"),
                                   search.trial.TrialSettings(epochs=2, batch_size=128),
                                   number=0, engine="optuna", tracker=tracker,
                                   callbacks=[_StopInsideTheStep()])
    assert isinstance(stopped.value.__cause__, SystemError)  # not recorded as a failure:
    tracker.flush()
    _, _, (child,) = mlflow_runs(uri, "stops")
    assert (child.info.status, child.data.tags["state"]) == ("KILLED", "interrupted")
    assert child.data.tags["reason"] == signals.USER_STOP
    with signals.sigterm_as_interrupt():  # the next search starts with no stop on record
        assert signals.stop_in_flight() is None


def test_a_stop_that_lands_in_a_garbage_collection_callback_is_not_lost_item_12(capsys):
    """JAX's gc callback swallowed a worker's SIGINT ("Exception ignored in
    _xla_gc_callback ... KeyboardInterrupt"): the worker trained on until SIGKILLed."""
    def callback(phase, info):
        if phase == "start" and not callback.done:
            callback.done = True
            os.kill(os.getpid(), signal.SIGINT)  # its handler raises inside the callback
            sum(range(1000))

    callback.done = False
    gc.callbacks.append(callback)
    try:
        with pytest.raises(KeyboardInterrupt), signals.interrupts_never_lost():
            gc.collect()
            time.sleep(5)  # where the stop raises (after 0.05 s)
    finally:
        gc.callbacks.remove(callback)
    assert "Exception ignored" not in capsys.readouterr().err


# -- item 12: cosmetics ------------------------------------------------------------------------

def test_best_in_an_empty_folder_creates_nothing_item_12(workdir, capsys):
    assert main(["best"]) == 2
    _one_line(capsys, "no MLflow store at sqlite:///")
    assert not (workdir / "mlruns").exists()


def test_a_worker_on_a_journal_file_that_does_not_exist_creates_none_item_12(workdir, capsys):
    assert main(["worker", "--study-name", "x", "--storage", "nope.journal"]) == 2
    _one_line(capsys, "no study storage at nope.journal")
    assert not (workdir / "nope.journal").exists()


def test_devices_that_the_backend_does_not_see_get_a_word_item_12(workdir, capsys):
    from search import runtime

    if runtime.gpu_count() > 0:
        pytest.skip("this machine has a GPU")
    words = f"--devices 0: Keras on {BACKEND} sees no GPU here (no GPU 0); the workers run on "
    with pytest.warns(UserWarning, match=words.replace("(", r"\(").replace(")", r"\)")):
        # (a bad --fix after it ends the command before any work)
        assert main(["search", "--devices", "0", "--fix", "activation=swishy"]) == 2
    assert not (workdir / "mlruns").exists()


def test_no_experimental_warning_when_a_dead_workers_trial_is_failed_item_12(tmp_path):
    from types import SimpleNamespace

    from search.parallel.optuna import Launcher

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/h.db", heartbeat_interval=1,
                                             grace_period=1)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)  # stale
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Launcher._await_heartbeat(SimpleNamespace(study=study), trial._trial_id)
    assert storage.get_trial(trial._trial_id).state == State.FAIL
    assert not [w for w in seen if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]


def test_optuna_logs_no_traceback_for_an_interrupted_trial_item_12():
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    logger = logging.getLogger("optuna")
    logger.addHandler(handler)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as a quiet worker's
    engine.quiet_interrupted_trials()
    study = optuna.create_study()

    def interrupted(trial):
        raise KeyboardInterrupt

    def broken(trial):
        raise ValueError("a real failure")

    try:
        with pytest.raises(KeyboardInterrupt):
            study.optimize(interrupted, n_trials=1)
        with pytest.raises(ValueError):
            study.optimize(broken, n_trials=1)
    finally:
        logger.removeHandler(handler)
        optuna.logging.set_verbosity(verbosity)
    text = sink.getvalue()
    assert "Trial 0" not in text and "KeyboardInterrupt" not in text, text
    assert "Trial 1 failed with parameters" in text and "ValueError: a real failure" in text
