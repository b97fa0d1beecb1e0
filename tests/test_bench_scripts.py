"""The benchmark scripts' own input checks (the benchmarks themselves run by hand)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_callgrind_bench_without_valgrind_says_so_in_one_line(tmp_path):
    os.symlink(sys.executable, tmp_path / "python")  # a PATH with python and nothing else
    proc = subprocess.run([sys.executable, "benchmarks/bench_sugar_callgrind.py"], cwd=ROOT,
                          env=dict(os.environ, PATH=str(tmp_path)), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "bench_sugar_callgrind.py needs valgrind and gcc on PATH "
        "(Debian: apt-get install valgrind gcc)"]


@pytest.mark.parametrize("args, line", [
    (["--backends", "tf"], "bench_sugar.py: unknown backend(s) tf"),
    (["--variants", "relu,sugar,swish"], "bench_sugar.py: unknown variant(s) swish"),
    (["--variants", "sugar,relu"],
     "bench_sugar.py: --variants must start with relu, the baseline of every ratio"),
    (["--processes", "-1"],
     "bench_sugar.py: --processes must be >= 0 (0: memory only) and --rounds >= 1"),
])
def test_sugar_bench_refuses_bad_arguments_in_one_line(args, line):
    proc = subprocess.run([sys.executable, "benchmarks/bench_sugar.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""  # refused before the table's header, before any worker
    assert proc.stderr.strip().splitlines() == [line]
