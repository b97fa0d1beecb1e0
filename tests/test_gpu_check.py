"""benchmarks/gpu_check.py without a GPU: its CPU smoke runs every step and writes the
figures, the carried wheels install for the GPU machine's Python, its import mask hides
what that machine lacks; and the GPU paths fixed by reading (mixed precision on torch,
GPU memory shared between a launcher and its workers)."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import BACKEND, one_pass
from search import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import gpu_check  # noqa: E402  (the standard library only)
import gpu_wheels  # noqa: E402


def _sections(text):
    """{"step backend": (status, [figure dicts])} of a figures file."""
    found = {}
    for block in text.split("\n## ")[1:]:
        lines = block.splitlines()
        if lines[0].startswith("summary: "):
            continue
        end = [line for line in lines if line.startswith("-- ")]
        status = end[0].split(": ", 1)[1].rsplit(", ", 1)[0] if end else "unfinished"
        found[lines[0]] = (status, [json.loads(line) for line in lines if line.startswith("{")])
    return found


@one_pass("tensorflow", "the GPU check's CPU smoke (it starts its torch and jax processes)")
def test_cpu_smoke_runs_every_step_and_writes_the_figures(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--cpu-smoke", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    text = (tmp_path / "gpu_check.txt").read_text()
    assert proc.returncode == 0, text[-4000:]
    assert (tmp_path / "gpu_check.log").stat().st_size > len(text)
    sections = _sections(text)
    expected = {f"{step} {backend}" for step in gpu_check.STEPS for backend in
                ([gpu_check.SMOKE_BACKENDS[step]] if step in gpu_check.SMOKE_BACKENDS
                 else gpu_check.BACKENDS)}
    assert set(sections) == expected
    assert {status for status, _ in sections.values()} == {"ok"}
    figures = {name: rows for name, (_, rows) in sections.items()}
    assert figures["env jax"][0]["failed_imports"] == []
    assert figures["env jax"][1] == {"device": "cpu:0", "gpu": False,
                                     "mixed_policy": "mixed_bfloat16"}
    for backend in gpu_check.BACKENDS:
        tests = figures[f"sugar_tests {backend}"][0]
        assert tests["passed"] >= 1 and tests["failures"] == []
        grad = figures[f"sugar_device {backend}"][0]
        assert grad["dtype"] == "float32" and 0 < grad["sugar_error_of_tolerance"] <= 1
        assert 0 < grad["portable_error_of_tolerance"] <= 1 and grad["relu_ms"] > 0
        rows = {r["variant"]: r for r in figures[f"bench_sugar {backend}"]}
        assert set(rows) == {"relu", "relu_again", "sugar"}  # with the control row
        assert all(r["model"] == "cnn_large" and r["train_ms"] > 0 for r in rows.values())
        assert rows["relu"]["train_ms_ratio"] == 1.0
    (mixed,) = figures["search_mixed torch"]
    assert (mixed["finished"], mixed["policy"]) == (1, "mixed_bfloat16")
    (pinned,) = figures["search_devices torch"]
    assert (pinned["finished"], pinned["devices"]) == (1, ["0"])  # its worker got GPU 0
    assert figures["monitor torch"][0]["ratio"] > 0


@pytest.mark.skipif(bool(gpu_check.find_gpus()), reason="this machine has a GPU")
def test_without_a_gpu_it_says_so_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "gpu_check.py: no GPU here (nvidia-smi lists none); --cpu-smoke runs every step at a "
        "toy size on the CPU"]
    assert list(tmp_path.iterdir()) == []  # said before any work


@pytest.mark.parametrize("args, line", [
    (["--backends", "tensorflow"],
     "gpu_check.py: unknown --backends tensorflow; valid: torch, jax"),
    (["--steps", "env,search"], "gpu_check.py: unknown --steps search; valid: env, "
                                "sugar_tests, sugar_device, bench_sugar, monitor, "
                                "search_mixed, search_devices"),
])
def test_bad_arguments_are_refused_in_one_line(args, line):
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr.splitlines()) == (2, "", [line])


_PROBE = """
import importlib.util, json
result = {"tensorflow_spec": importlib.util.find_spec("tensorflow") is None}
try:
    import tensorflow
except ModuleNotFoundError as err:
    result["tensorflow"] = str(err)
import keras_tuner, mlflow, optuna
print(json.dumps(result))
"""


@one_pass("jax", "the GPU check's import mask")
def test_the_smoke_mask_hides_what_the_gpu_machine_lacks(tmp_path):
    """TensorFlow is installed here, not on the GPU machine nor among the wheels: under the
    mask it cannot be imported and find_spec says it is absent; the carried packages and
    the machine's own import as before."""
    pytest.importorskip("tensorflow", reason="the mask is shown hiding TensorFlow")
    path = gpu_check.smoke_mask(str(tmp_path))
    masked = set(open(path).read().split())
    assert "tensorflow" in masked
    assert not masked & {"keras", "optuna", "mlflow", "keras_tuner", "torch", "jax", "numpy"}
    env = dict(os.environ, KERAS_RELU_GPU_MASK=path,
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "benchmarks", "gpu_machine"), ROOT]))
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "tensorflow_spec": True,
        "tensorflow": "No module named 'tensorflow' (not on the GPU machine and not a "
                      "carried wheel)"}


@one_pass("torch", "the wheel download (about 31 MiB)")
def test_the_wheel_list_downloads_and_installs_for_python_312(tmp_path):
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                            str(tmp_path / "probe"), "namex==0.1.0"], capture_output=True,
                           text=True, timeout=300)
    if probe.returncode:
        pytest.skip(f"pip cannot download here: {probe.stderr.strip().splitlines()[-1:]}")
    dest = tmp_path / "whl"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_wheels.py", "--dest", str(dest)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]  # pip install --target accepted them
    pins = gpu_wheels.read_list()
    assert sorted(gpu_wheels.wheel_key(p) for p in dest.iterdir()) == sorted(
        (gpu_wheels.canonical(n), v) for n, v in pins)
    (line,) = proc.stdout.splitlines()
    total = float(re.search(r"= ([\d.]+) MiB \(limit 64 MiB\)", line).group(1))
    wheels_mib = sum(p.stat().st_size for p in dest.iterdir()) / 2**20
    assert wheels_mib < total < 64, line
    assert line.startswith(f"{len(pins)} wheels {wheels_mib:.1f} MiB + working tree ")


@pytest.mark.skipif(BACKEND != "torch", reason="torch's own GPU test")
def test_mixed_precision_is_float16_where_torch_sees_a_gpu(monkeypatch):
    """Keras has no device list on torch (keras.distribution is TF and JAX only): the
    policy followed torch.cuda, not bfloat16 for every torch run."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.mixed_policy() == "mixed_float16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.mixed_policy() == "mixed_bfloat16"


def test_processes_sharing_a_gpu_take_memory_as_they_use_it(monkeypatch):
    for key in runtime.SHARED_GPU_ENV:  # absent here, restored afterwards
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    env = runtime.worker_env(2, "jax", "sqlite:///mlflow.db")
    assert (env["XLA_PYTHON_CLIENT_PREALLOCATE"], env["TF_FORCE_GPU_ALLOW_GROWTH"]) == (
        "false", "true")
    runtime.share_gpus()  # the launcher, before its backend takes a GPU
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")  # the user's own wins
    assert runtime.worker_env(2, "jax", "x")["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
