"""The benchmark scripts' own input checks (the benchmarks themselves run by hand)."""

import os
import subprocess
import sys

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
