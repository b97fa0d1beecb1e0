"""The wheel: `python -m build` makes it from a copy of the checkout, it holds the two
packages and nothing else of the repository, and in a clean virtual environment (no
system site-packages, no file of the checkout) `import keras_relu` works and the README's
library example runs from it, on JAX. On the tensorflow pass (once)."""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT, one_pass
from readme import library_example

pytestmark = one_pass("tensorflow", "the wheel check")
NOT_COPIED = (".git", "mlruns", "site", "build", "dist", "__pycache__", "*.egg-info",
              ".pytest_cache", ".whl")  # what a fresh clone lacks, and the runs
# What the README's library example needs besides the wheel: a backend and the digits data.
VENV_PACKAGES = ("jax==0.10.2", "jaxlib==0.10.2", "scikit-learn")


def _wheel(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_COPIED))
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                           "--outdir", str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("keras_relu-*.whl")
    return wheel


def test_the_wheel_installs_in_a_clean_venv_and_runs_the_readme_example(tmp_path):
    import keras_relu

    wheel = _wheel(tmp_path)
    assert wheel.name == f"keras_relu-{keras_relu.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"keras_relu", "search", f"keras_relu-{keras_relu.__version__}.dist-info"}
    assert not [n for n in names if n.endswith((".md", ".png", ".yml"))]
    metadata = zipfile.ZipFile(wheel).read(
        f"keras_relu-{keras_relu.__version__}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata and "Classifier: " in metadata

    # Nothing of the checkout: no PYTHONPATH (pip would find this checkout's keras_relu on it
    # and call the requirement satisfied), no active virtual environment.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "-q", str(wheel), *VENV_PACKAGES],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "work"  # not the checkout: nothing of it on the path
    work.mkdir()
    (work / "example.py").write_text(
        "import keras_relu, sys\nprint('FROM', keras_relu.__file__, keras_relu.__version__)\n"
        + library_example().replace("epochs=10", "epochs=2"))
    proc = subprocess.run([str(python), "-I", "example.py"], cwd=work,
                          env=dict(env, KERAS_BACKEND="jax"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    source = pathlib.Path(proc.stdout.split("FROM ")[1].split()[0])
    assert source.is_relative_to(venv), source
    assert "dead fraction by epoch: [" in proc.stdout, proc.stdout[-2000:]
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "list"],
                            env=env, capture_output=True, text=True)
    assert "tensorflow" not in listed.stdout.lower()  # the base install: no search extra
