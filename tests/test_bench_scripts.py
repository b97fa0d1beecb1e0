"""The benchmark scripts' own input checks (the benchmarks themselves run by hand), and
one tiny run of the scale benchmark, whose invariants are the product's."""

import json
import os
import subprocess
import sys

import pytest
from conftest import one_pass, worker_env

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
    (["--models", "mlp,resnet"],
     "bench_sugar.py: unknown model(s) resnet; valid: mlp, cnn, cnn_large"),
    (["--variants", "relu,xla_swish"], "bench_sugar.py: unknown variant(s) xla_swish"),
    (["--backends", "tensorflow,torch", "--variants", "relu,xla_sugar"],
     "bench_sugar.py: xla_ variants need tensorflow or jax (Keras' jit_compile on torch has "
     "an open bug)"),
])
def test_sugar_bench_refuses_bad_arguments_in_one_line(args, line):
    proc = subprocess.run([sys.executable, "benchmarks/bench_sugar.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""  # refused before the table's header, before any worker
    assert proc.stderr.strip().splitlines() == [line]


_FREE_AND_READ = """
import numpy as np
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
print(rss())
for _ in range(2):  # the first free raises glibc's moving threshold to 16 MiB
    a = np.ones(4 << 20, dtype='float32'); held = rss(); del a
print(held); print(rss())
"""


@pytest.mark.parametrize("allocator, kept_mib", [("exact", (0, 4)), ("default", (14, 18))])
def test_memory_processes_allocator_returns_freed_activations(allocator, kept_mib):
    """bench_sugar measures memory with ALLOCATORS["exact"]: a freed 16 MiB buffer leaves
    the resident set. With malloc's defaults (the control) it stays, so a peak would
    count buffers freed before."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from bench_sugar import ALLOCATORS

    env = dict(os.environ, **ALLOCATORS[allocator])
    proc = subprocess.run([sys.executable, "-c", _FREE_AND_READ], env=env, capture_output=True,
                          text=True, check=True)
    before, holding, after = (int(v) / 1024 for v in proc.stdout.split())
    assert holding - before > 15  # the 16 MiB buffer was resident while held
    assert kept_mib[0] <= after - before <= kept_mib[1]


def test_xla_memory_bench_outside_jax_says_so_in_one_line():
    env = dict(os.environ, KERAS_BACKEND="torch")
    proc = subprocess.run([sys.executable, "benchmarks/sugar_xla_memory.py"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "sugar_xla_memory.py: needs KERAS_BACKEND=jax and --variants starting with relu, of "
        "relu, relu_again, sugar, injection, relu_custom, bsilu_compiled, bsilu_uncompiled or "
        "sugar_<surrogate>"]


@pytest.mark.parametrize("args", [["--models", "vgg"], ["--hlo", "sugar_gelu", "--variants",
                                                        "relu,sugar"]])
def test_xla_memory_bench_bad_models_or_hlo_say_so_in_one_line(args):
    env = dict(os.environ, KERAS_BACKEND="jax")
    proc = subprocess.run([sys.executable, "benchmarks/sugar_xla_memory.py", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "sugar_xla_memory.py: --models takes cnn and mlp; --hlo one of the --variants"]


@pytest.mark.parametrize("script, args", [
    ("bench_stream_time.py", ["--models", "mlp,resnet"]),
    ("bench_stream_time.py", ["--rounds", "0"]),
    ("bench_stream_memory.py", ["--samples", "0"]),
])
def test_stream_benches_refuse_bad_arguments_in_one_line(script, args):
    proc = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"{script}: ")


@pytest.mark.parametrize("args", [["--activations", "relu,swish9"], ["--seeds", "0"],
                                  ["--scenario", "cifar10-vgg16"]])
def test_revive_bench_refuses_bad_arguments_in_one_line(args):
    proc = subprocess.run([sys.executable, "benchmarks/bench_revive.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("bench_revive.py: ")


@pytest.mark.parametrize("args, line", [
    (["--workers", "8,0"], "--workers takes positive whole numbers separated by commas, not "
                           "'8,0'"),
    (["--workers", "8,x"], "--workers takes positive whole numbers separated by commas, not "
                           "'8,x'"),
    (["--configs", "direct,sharded"], "unknown configuration(s) sharded; valid: direct, proxy, "
                                      "server"),
    (["--real", "-1"], "--real must be >= 0, --trials-per-worker, --real-trials and --epochs >= 1"),
    (["--epochs", "0"], "--real must be >= 0, --trials-per-worker, --real-trials and --epochs >= 1"),
    (["--epoch-seconds", "0"], "--epoch-seconds must be > 0"),
    (["--pg-url", "sqlite:///x.db"], "--pg-url must be a postgresql:// URL, not 'sqlite:///x.db'"),
    (["--json", "/no/such/folder/out.json"], "--json: no folder /no/such/folder"),
])
def test_scale_bench_refuses_bad_arguments_in_one_line(args, line):
    proc = subprocess.run([sys.executable, "benchmarks/bench_search_scale.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""  # before any database, process or table
    assert proc.stderr.splitlines() == [f"bench_search_scale.py: {line}"]


@one_pass("jax")
def test_scale_bench_two_stand_in_workers_keep_every_invariant(tmp_path, pg_new_database):
    """Two stand-in `keras-relu worker`s on a fresh PostgreSQL database: the seed's trial and
    the workers' 2 x 2 all finished once, each with one closed MLflow run; the connections
    and the timed calls were seen."""
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench_search_scale.py", "--workers", "2",
                           "--configs", "direct", "--trials-per-worker", "2", "--epochs", "2",
                           "--epoch-seconds", "0.05", "--pg-url", pg_new_database(),
                           "--json", str(out)], cwd=ROOT, env=worker_env(),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert "error" not in row, row
    assert row["trials"] == {"trials": 5, "counted": 5, "retried": 0, "stuck": 0,
                             "duplicated": 0, "lost": 0, "short": 0}
    assert row["runs"] == {"runs": 5, "mismatched": 0, "running": 0}
    assert row["errors"] == {"exceptions": {}, "failed_workers": 0}
    assert 2 <= row["connections"]["study_db"] <= 8  # two workers, pools of a few each
    latency = row["latency_ms"]
    assert latency["ask"]["n"] == 4 and latency["tell"]["n"] == 4
    assert latency["epoch_log"]["n"] >= 4 and latency["report"]["n"] >= 4
    assert 0 < row["per_trial"]["total_ms"] < 60_000 and row["trials_per_min"] > 0
    assert 0 < row["memory_kib"]["private_median"] < 1 << 20  # a forked stand-in: < 1 GiB
    assert "| 2 | direct | " in proc.stdout
