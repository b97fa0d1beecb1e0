"""Bad input: one line on stderr, exit status 2, no model built, nothing tracked."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import search.trial
from search.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("keras", "tensorflow", "jax", "torch", "mlflow", "optuna", "sklearn")


def _cli(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_help_imports_no_heavy_library(tmp_path):
    code = (
        "import contextlib, io, sys\n"
        "from search.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--help']) == 0 and main(['search', '--help']) == 0\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out
    start = time.perf_counter()
    proc = _cli(["search", "--help"], tmp_path)
    assert proc.returncode == 0 and "--study-name" in proc.stdout
    assert time.perf_counter() - start < 5  # well under a second on an idle machine


@pytest.mark.parametrize(
    "args, words",
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--objective", "loss"], "invalid choice: 'loss'"),
        (["--fix", "activation=swishy"], "unknown activation 'swishy'"),
        (["--storage", "postgresql://me:s3cret@127.0.0.1:1/x"],
         "cannot open storage postgresql://me:***@127.0.0.1:1/x"),
    ],
)
def test_bad_input_in_a_subprocess(tmp_path, args, words):
    proc = _cli(["search", "--trials", "1", "--epochs", "1", *args], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
    assert "s3cret" not in proc.stderr
    assert not (tmp_path / "mlruns").exists()


def _npz_without_x_train(path):
    np.savez(path, x=np.zeros((4, 2)), y_train=np.zeros(4))


@pytest.mark.parametrize(
    "args, prepare, words",
    [
        (["--dataset", "npz:missing.npz"], None, "npz file missing.npz does not exist"),
        (["--dataset", "npz:text.npz"], lambda d: (d / "text.npz").write_text("hello"),
         "text.npz is not an npz file"),
        (["--dataset", "npz:own.npz"], lambda d: _npz_without_x_train(d / "own.npz"),
         "own.npz lacks x_train"),
        (["--space", "s.yaml"], lambda d: (d / "s.yaml").write_text("depth: [1, \n"),
         "malformed space file s.yaml"),
        (["--space", "s.toml"], lambda d: (d / "s.toml").write_text('clipping = "none"\nclip_threshold = 1.0\n'),
         "clip_threshold is set but clipping can never be"),
        (["--choices", "optimizer=adam,lion"], None, "unknown optimizer 'lion'"),
        (["--storage", "nosuchdialect://x"], None, "cannot open storage nosuchdialect://x"),
        (["--storage", "sqlite:////nonexistent/dir/x.db"], None, "cannot open storage sqlite:"),
        (["--trials", "0"], None, "argument --trials: must be > 0"),
    ],
)
def test_bad_input_in_process(tmp_path, monkeypatch, capsys, args, prepare, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(search.trial, "build_default", _no_model)
    if prepare:
        prepare(tmp_path)
    assert main(["search", "--trials", "1", "--epochs", "1", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "mlruns").exists()


def test_resuming_with_another_objective_or_dataset_is_refused(tmp_path, monkeypatch, capsys):
    import optuna

    monkeypatch.chdir(tmp_path)
    optuna.create_study(study_name="mine", storage="sqlite:///s.db", direction="minimize")
    assert main(["search", "--study-name", "mine", "--storage", "sqlite:///s.db"]) == 2
    assert "another objective" in capsys.readouterr().err


def _no_model(*args, **kwargs):
    raise AssertionError("a model was built for bad input")
