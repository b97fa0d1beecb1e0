"""What a new user ran into on a first search: help texts, one-line errors, lines nobody
asked for on stderr, and the search guide's word on the npz format."""

import argparse
import pathlib
import re
import subprocess
import sys

import keras
import pytest
from conftest import ROOT, one_pass, worker_env

import search
from search.cli import build_parser
from search.data import SPLITS


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_option_says_what_it_does_and_the_search_options_their_defaults():
    silent = [f"{name} {action.option_strings[0]}" for name, sub in _subcommands().items()
              for action in sub._actions if action.option_strings and action.help is None]
    assert silent == []
    search_help = {a.dest: a.help for a in _subcommands()["search"]._actions}
    for dest in ("engine", "batch_size", "seed"):
        assert "default" in search_help[dest], (dest, search_help[dest])
    assert "YAML, JSON or TOML" in search_help["space"]
    assert "val accuracy" not in search_help["objective"]  # it optimises --metric
    assert "--metric" in search_help["objective"]


def test_model_takes_a_keras_model_as_it_is_and_a_layer_is_one_line(workdir):
    layer = keras.layers.Dense(10)
    with pytest.raises(search.UsageError) as caught:
        search.run(model=layer, trials=1, progress=False)
    message = str(caught.value)
    assert "\n" not in message and "not a Dense layer" in message
    assert "builder or factory function, a keras.Model" in message
    assert not (workdir / "mlruns").exists()
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    before = [w.copy() for w in model.get_weights()]
    result = search.run(model=model, trials=1, epochs=1, controls=False, progress=False)
    assert result.trials[0].state == "complete"
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))  # never trained


# A search in a fresh Python, after the user's own `import keras` (the user's import may
# print TensorFlow's lines; nothing after MARK may), with residual blocks without batch
# norm: TensorFlow 2.21's "empty op name" false alarm.
SCRIPT = """
import keras
print("MARK", flush=True)
import sys
print("MARK", file=sys.stderr, flush=True)
import search
search.run(trials=1, epochs=1, progress=False, controls=False,
           fix=["depth=2", "width=8", "residual=true", "batch_norm=false", "activation=relu"])
"""
NATIVE_LINE = re.compile(r"^(WARNING: All log messages|[IWEF]\d{4} )|empty op name|oneDNN")


def _stderr_after_mark(workdir, level):
    """stderr after the user's `import keras`, TF_CPP_MIN_LOG_LEVEL `level` (None: unset)."""
    env = {k: v for k, v in worker_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr.split("MARK\n", 1)[1].splitlines()


@one_pass("jax", "a search in a subprocess")
def test_tensorflow_starts_quietly_when_keras_was_imported_first(workdir):
    lines = _stderr_after_mark(workdir, None)  # Keras imports TensorFlow to seed it
    assert [line for line in lines if NATIVE_LINE.search(line)] == []


@one_pass("tensorflow", "a search in a subprocess")
def test_no_empty_op_name_false_alarm_at_tf_log_level_2(workdir):
    lines = _stderr_after_mark(workdir, "2")
    assert [line for line in lines if NATIVE_LINE.search(line)] == []


def test_the_search_guide_names_every_array_an_npz_file_may_hold():
    text = pathlib.Path(ROOT, "docs", "guides", "search.md").read_text()
    npz = [p for p in text.split("\n\n") if "npz file" in p and "x_train" in p]
    assert npz, "no paragraph of docs/guides/search.md describes the npz file's arrays"
    assert all(name in npz[0] for name in SPLITS), (SPLITS, npz[0])
