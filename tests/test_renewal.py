"""A long search renews its worker process (issue 14, item 14): TensorFlow keeps every fit's
traced graphs, about 5 MiB a trial, so a worker runs `trials_per_process` trials and a fresh
one takes the rest. `benchmarks/bench_search_memory.py` measures the memory itself."""

import time

import keras
import optuna
import pytest
from conftest import mlflow_runs, search_logic

import search
from search import runtime
from search.engines.optuna import open_storage

FAST = ["depth=1", "width=16", "batch_norm=false"]


def _trials(result):
    study = optuna.load_study(study_name=result.study_name, storage=open_storage(result.storage))
    return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


def test_only_tensorflow_renews_by_default():
    assert runtime.trials_per_process(None, "tensorflow") == 25
    assert runtime.trials_per_process(None, "jax") is None
    assert runtime.trials_per_process(None, "torch") is None
    assert runtime.trials_per_process(3, "torch") == 3
    # A search of one process moves into workers where that saves memory, or when asked.
    assert runtime.renews_one_process(101, None, "tensorflow")
    assert not runtime.renews_one_process(100, None, "tensorflow")
    assert not runtime.renews_one_process(1000, None, "jax")
    assert runtime.renews_one_process(5, 2, "torch") and not runtime.renews_one_process(2, 2, "torch")


@search_logic("tensorflow")
def test_a_search_longer_than_the_quota_runs_in_fresh_workers_item_14(workdir):
    result = search.run(trials=5, epochs=1, batch_size=128, fix=FAST, trials_per_process=2,
                        controls=False, progress=False)
    trials = _trials(result)
    assert [t.state.name for t in trials if t.state.name not in ("COMPLETE", "PRUNED")] == []
    workers = [t.user_attrs["worker"] for t in trials]
    ran = {wid: workers.count(wid) for wid in dict.fromkeys(workers)}  # in order of start
    assert list(ran.values()) == [2, 2, 1] and runtime.process_id() not in ran
    assert len(result.trials) == 5 and result.total_trials == 5
    _, parents, children = mlflow_runs(result.tracking_uri, result.study_name)
    assert parents[0].info.status == "FINISHED"
    assert sorted(c.info.status for c in children) == ["FINISHED"] * 5
    assert {c.data.tags["worker"] for c in children} == set(ran)


@search_logic("tensorflow")
def test_renewal_keeps_to_the_timeout(workdir):
    """A fresh worker gets what is left of the search's timeout, not a new one."""
    began = time.monotonic()
    result = search.run(trials=100, epochs=1, batch_size=128, fix=FAST, trials_per_process=1,
                        timeout=20, controls=False, progress=False)
    took = time.monotonic() - began
    starts = len({t.user_attrs["worker"] for t in _trials(result)})
    assert 1 <= len(result.trials) < 100 and starts == len(result.trials)
    # Each worker takes ~10 s to start here: 20 s leave room for two or three, not 100.
    assert took < 20 + 60, took


@search_logic("tensorflow")
def test_a_builder_no_worker_can_import_stays_in_this_process_and_says_so(workdir):
    def build(cures, input_shape, num_classes):  # a closure: no other process imports it
        inputs = keras.Input(input_shape)
        outputs = keras.layers.Dense(num_classes, activation="softmax")(cures.dense(8)(inputs))
        return keras.Model(inputs, outputs)

    space = search.default_space(model_dims=False).with_cli(["batch_norm=false"])
    with pytest.warns(UserWarning, match="the 3 trials run in this process.*workers import it"):
        result = search.run(model=build, space=space, trials=3, epochs=1, trials_per_process=2,
                            controls=False, progress=False)
    assert {t.user_attrs["worker"] for t in _trials(result)} == {runtime.process_id()}


@pytest.mark.parametrize("args, words", [
    (["--trials-per-process", "0"], "argument --trials-per-process: must be > 0"),
    (["--engine", "kerastuner", "--trials-per-process", "5"],
     "--trials-per-process applies to --engine optuna only"),
])
def test_a_bad_quota_is_one_line_and_exit_2(workdir, capsys, args, words):
    from search.cli import main

    assert main(["search", "--trials", "1", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not (workdir / "mlruns").exists()
