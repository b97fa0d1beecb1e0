"""The light library install: what pyproject.toml declares, what `keras_relu` imports, and
the one line `keras-relu` prints without the search extra. Installs nothing."""

import ast
import os
import pathlib
import subprocess
import sys
import tomllib

from conftest import BACKEND

from search import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SEARCH_ONLY = ("tensorflow", "mlflow", "optuna", "keras-tuner", "keras_tuner", "plotly",
               "scipy", "scikit-learn", "sklearn", "matplotlib", "tqdm", "pyyaml", "yaml")


def _names(requirements):
    return {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
            for r in requirements}


def test_the_base_install_is_keras_and_numpy():
    assert _names(PROJECT["dependencies"]) == {"keras", "numpy"}
    extras = PROJECT["optional-dependencies"]
    assert {"tensorflow-cpu", "mlflow", "optuna", "keras-tuner", "scikit-learn"} <= _names(
        extras["search"])
    assert "plots" not in extras  # matplotlib comes with the search, or on its own
    assert extras["all"] == ["keras-relu[search,jax,torch]"]


def test_keras_relu_imports_no_module_of_the_search():
    allowed = {"keras", "numpy", "keras_relu", *sys.stdlib_module_names}
    for path in (ROOT / "keras_relu").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # at import time: the declared dependencies only
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""])
                assert {n.split(".")[0] for n in names} <= allowed, f"{path.name}:{node.lineno}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            assert "search" not in roots, f"{path.name}:{node.lineno}"
    # Keras itself imports some of these when they are installed (jax, matplotlib,
    # sklearn): what counts is what `keras_relu` adds to a plain `import keras`.
    code = ("import sys, keras\n"
            "before = set(sys.modules)\n"
            "import keras_relu\n"
            "added = {m.split('.')[0] for m in set(sys.modules) - before}\n"
            f"print(sorted(added & set({SEARCH_ONLY + ('search',)!r})))")
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_without_the_search_extra_the_command_says_which_to_install(monkeypatch, capsys):
    real = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("optuna", "mlflow") else real(name, *a))
    assert cli.main(["search"]) == 2
    err = capsys.readouterr().err
    assert err == ("keras-relu: the command line needs the search extra (missing: optuna, "
                   "mlflow): pip install 'keras-relu[search]'\n")


def test_no_command_lists_the_commands(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert all(word in out for word in ("search", "worker", "ui", "compare"))
