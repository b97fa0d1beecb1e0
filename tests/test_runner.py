"""tests/run.py refuses bad arguments in one line, before any pass starts, and names every
failed test again at the end of its output (CI shows a long log's tail)."""

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


def test_failed_tests_are_named_again_at_the_end(tmp_path):
    (tmp_path / "test_two.py").write_text("def test_fine():\n    pass\n\n\n"
                                          "def test_broken():\n    assert 1 == 2\n")
    proc = subprocess.run([sys.executable, "tests/run.py", "--backends", "jax,torch", "--",
                           str(tmp_path / "test_two.py"), "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    tail = proc.stdout.splitlines()[-3:]
    assert sorted(line.split(" - ")[0].rsplit("/", 1)[-1] for line in tail[:2]) == \
        ["test_two.py::test_broken"] * 2, tail
    assert {line.split(":")[0] for line in tail[:2]} == {"jax", "torch"}
    assert tail[2] == "all backends: 2 passed, 2 failed, 0 skipped"
