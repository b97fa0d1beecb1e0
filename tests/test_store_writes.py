"""MLflow writes that scale (issue 25): one `log_batch` per epoch, split by MLflow at its
1000-metric limit; no metric lost when a search is SIGTERMed mid-trial, with MLflow's
asynchronous logging too; a tracking server lost mid-search is one line per worker and a
non-zero exit in seconds, and a resume once it is back leaves nothing RUNNING.

Real parts throughout: a real `mlflow server`, real searches and workers, MLflow read
back through `MlflowClient`; the counts are of the calls MLflow really made.
"""

import contextlib
import os
import re
import signal
import time

import optuna
from conftest import BACKEND, one_pass, search_logic
from mlflow import MlflowClient
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from test_stops import FAST, finish, runs, start, start_mlflow_server, trials, wait_for

from search import data as datasets
from search.engines import optuna as engine
from search.tracking import Tracker
from search.trial import TrialSettings, run_trial

State = optuna.trial.TrialState
LOST_BOUND = 75  # seconds from a lost server to the search's exit (measured: 17 to 32 s)
CONFIG = {"activation": "relu", "initializer": "he_normal", "batch_norm": False,
          "dropout": 0.0, "clipping": "none", "schedule": "constant",
          "learning_rate": 1e-3, "optimizer": "adam", "depth": 2, "width": 16}


def _count(monkeypatch, cls, names, calls):
    """Wrap `cls.<name>` for each name so that every real call is recorded in `calls`."""
    for name in names:
        original = getattr(cls, name)

        def wrapper(self, *args, _name=name, _original=original, **kwargs):
            calls.append((_name, args, kwargs))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)


@search_logic("tensorflow")
def test_one_log_batch_per_epoch_none_per_metric_and_mlflow_splits_a_big_one(tmp_path,
                                                                            monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "writes")
    tracker.start_parent({"engine": "optuna"}, {})
    client_calls, store_calls = [], []
    _count(monkeypatch, MlflowClient, ["log_batch", "log_metric", "log_param", "set_tag"],
           client_calls)
    _count(monkeypatch, SqlAlchemyStore, ["log_batch"], store_calls)
    result = run_trial(CONFIG, datasets.load("digits"), TrialSettings(epochs=3, batch_size=128),
                       number=0, engine="optuna", tracker=tracker)
    tracker.flush()
    assert result.state == "complete"
    assert {name for name, _, _ in client_calls} == {"log_batch"}  # nothing per metric
    mine = [kw for _, args, kw in client_calls if args[0] == result.run_id]
    epochs = [kw["metrics"] for kw in mine if kw["metrics"]]
    assert len(epochs) == 3 and len(mine) == 3 + 2  # + the params, + the closing tags
    for step, metrics in enumerate(epochs):
        keys = {m.key for m in metrics}
        assert {m.step for m in metrics} == {step}
        assert {"val_accuracy", "dead_fraction", "learning_rate"} <= keys
        assert len([k for k in keys if k.startswith("dead_fraction/")]) == 2  # per layer
    assert len(store_calls) == len(mine)  # each one request to the store

    client_calls.clear(), store_calls.clear()
    many = {f"layer_{i}/dead_fraction": i / 2500 for i in range(2500)}
    tracker.log(result.run_id, metrics=many, step=7)
    assert len(client_calls) == 1  # one call of ours ...
    assert [len(kw["metrics"]) for _, _, kw in store_calls] == [1000, 1000, 500]  # ... that MLflow splits at its limit of 1000 metrics
    logged = MlflowClient(uri).get_run(result.run_id).data.metrics
    assert len([k for k in logged if k.startswith("layer_")]) == 2500
    tracker.finish_parent("FINISHED")


def _steps(client, run_id, key):
    return [m.step for m in client.get_metric_history(run_id, key)]


@one_pass("torch")
def test_no_metric_is_lost_when_a_search_is_sigtermed_mid_trial_also_async(tmp_path):
    procs, began = {}, time.monotonic()
    for mode in ("false", "true"):  # MLflow's own switch for asynchronous logging
        (tmp_path / mode).mkdir()
        procs[mode] = start(["--trials", "4", "--epochs", "12", "--no-controls", *FAST],
                            tmp_path / mode, {"MLFLOW_ENABLE_ASYNC_LOGGING": mode})
    storages = {m: engine.open_storage(str(tmp_path / m / engine.DEFAULT_STORAGE)) for m in procs}

    def mid_second_trial(mode):
        ended = trials(storages[mode], "digits")
        return len(ended) >= 2 and ended[-1].state == State.RUNNING \
            and len(ended[-1].intermediate_values) >= 2

    for mode, proc in procs.items():
        wait_for(lambda: mid_second_trial(mode), proc, 240, "a second trial's epochs")
        proc.send_signal(signal.SIGTERM)
    for mode, proc in procs.items():
        code, _, err = finish(proc, 120)
        assert code == 130, err[-2000:]
        client = MlflowClient(f"sqlite:///{tmp_path / mode}/mlruns/mlflow.db")
        children, parents = runs(tmp_path / mode, "digits")
        by_trial = {int(r.data.tags["trial_number"]): r for r in children}
        ended = trials(storages[mode], "digits")
        assert len(children) == len(ended) >= 2 and [p.info.status for p in parents] == ["KILLED"]
        for trial in ended:
            run = by_trial[trial.number]
            reported = sorted(trial.intermediate_values)  # the epochs Optuna recorded
            logged = _steps(client, run.info.run_id, "val_accuracy")
            layers = [k for k in run.data.metrics if k.startswith("dead_fraction/")]
            assert layers and all(_steps(client, run.info.run_id, k) == logged for k in layers)
            if trial.state == State.COMPLETE:
                assert logged == reported == list(range(12)), (mode, trial.number)
                assert run.info.status == "FINISHED"
            else:  # interrupted: its epochs up to the stop (one more if the stop came
                # between MLflow's callback and Optuna's report, in the same epoch end)
                assert trial.state == State.FAIL and run.info.status == "KILLED"
                assert logged[:len(reported)] == reported and len(logged) - len(reported) \
                    in (0, 1), (mode, reported, logged)
    print(f"\nSIGTERM mid-trial, sync and async: {time.monotonic() - began:.0f} s")


@one_pass("jax")
def test_a_lost_tracking_server_is_one_line_per_worker_and_a_resume_closes_all(tmp_path):
    server, url = start_mlflow_server(tmp_path / "server")
    began, name = time.monotonic(), "lost"
    try:
        proc = start(["--workers", "2", "--trials", "4", "--epochs", "20", "--study-name", name,
                      "--tracking-uri", url, *FAST], tmp_path)
        storage = engine.open_storage(str(tmp_path / engine.DEFAULT_STORAGE))
        wait_for(lambda: len({t.user_attrs.get("worker") for t in trials(storage, name)
                              if t.state == State.RUNNING}) == 2, proc, 240,
                 "both workers in a trial")  # each writes to MLflow again within the trial
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        lost_at = time.monotonic()
        code, out, err = finish(proc, 180)
        took = time.monotonic() - lost_at
        line = f"cannot reach the MLflow tracking server {url}: connection refused (mid-search"
        said = re.findall(r"keras-relu [^\r\n]*", err)  # (after the progress bar's \r)
        assert code == 1 and took < LOST_BOUND, (took, err[-3000:])
        assert [x.partition(":")[0] for x in said] == ["keras-relu worker"] * 2 + \
            ["keras-relu search"], said  # one line a worker, one of the launcher, no more
        assert all(line in x for x in said) and "Traceback" not in err, err[-3000:]
        print(f"\ntracking server lost: the search exited 1 after {took:.1f} s")
        server, _ = start_mlflow_server(tmp_path / "server", int(url.rpartition(":")[2]))
        code, out, err = finish(start(["--study-name", name, "--storage",
                                       engine.DEFAULT_STORAGE, "--trials", "1",
                                       "--tracking-uri", url], tmp_path, command="worker"))
        assert code == 0, err[-2000:]
        assert "closed" in out and "View run" not in out, out  # MLflow's per-run links
    finally:
        with contextlib.suppress(ProcessLookupError):  # not if it is gone already
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    ended = trials(storage, name)
    children, parents = runs(tmp_path, name, f"sqlite:///{tmp_path}/server/mlflow.db")
    assert not [r for r in children + parents if r.info.status == "RUNNING"]
    assert not [t for t in ended if t.state == State.RUNNING]
    assert State.COMPLETE in {t.state for t in ended}  # the resumed worker's trial
    for trial in ended:
        statuses = [r.info.status for r in children
                    if r.data.tags["trial_number"] == str(trial.number)]
        if trial.state == State.COMPLETE:
            assert statuses == ["FINISHED"], (trial.number, statuses)
        else:  # failed when the server went away: its run closed FAILED by the resume
            assert statuses in ([], ["FAILED"]), (trial.number, statuses)
            assert "tracking server" in trial.user_attrs["reason"], trial.user_attrs
    print(f"lost and resumed: {time.monotonic() - began:.0f} s in all ({BACKEND})")
