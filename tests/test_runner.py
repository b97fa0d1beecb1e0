"""tests/run.py refuses bad arguments in one line, before any pass starts."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["--backends", "jax,theano"], "unknown backend(s): theano"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, message):
    proc = subprocess.run([sys.executable, "tests/run.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [message] and proc.stdout == ""
