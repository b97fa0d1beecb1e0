"""The documentation: every public name has a docstring and a place in the API reference,
the site builds with `mkdocs build --strict`, and every code block of the README runs
(with smaller arguments). On the tensorflow pass: none of it depends on the backend."""

import inspect
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
from browser import free_port, start_ui
from conftest import ROOT, one_pass, worker_env
from readme import readme_blocks

import keras_relu
import search

ROOT = pathlib.Path(ROOT)
# What the tests run instead of the README's figures: (README text, what runs).
SMALLER = {"python": [("epochs=10", "epochs=2"), ("trials=20, epochs=5", "trials=2, epochs=1")],
           "bash": [("keras-relu search", "keras-relu search --trials 2 --epochs 1")]}
pytestmark = one_pass("tensorflow", "documentation")


def _public_objects():
    """(qualified name, object) of every public name and of its classes' own public
    methods and properties."""
    for module in (keras_relu, search):
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or callable(obj)):
                continue  # ACTIVATIONS, SURROGATES: documented in the reference's text
            yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj):
                for member, value in vars(obj).items():
                    if member.startswith("_"):
                        continue
                    if isinstance(value, property) or callable(getattr(value, "__func__", value)):
                        yield f"{module.__name__}.{name}.{member}", getattr(obj, member)


def test_every_public_name_and_its_methods_have_a_docstring():
    missing = [name for name, obj in _public_objects() if not inspect.getdoc(obj)]
    assert missing == []
    assert len(list(_public_objects())) > 60  # the walk found the classes' members


def _reference_names():
    """The public names the API reference pages document: `::: path` with its heading."""
    names = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        for path, options in re.findall(r"^::: (\S+)\n((?:    .*\n)*)", page.read_text(), re.M):
            heading = re.search(r'heading: "([^"]+)"', options)
            names.add(heading.group(1) if heading else path)
    return names


def test_the_api_reference_lists_every_public_name():
    public = {f"{m.__name__}.{n}" for m in (keras_relu, search) for n in m.__all__}
    assert public - _reference_names() == set()


def _headings(html):
    """{heading text: the HTML up to the next heading} of an API page's h3 entries."""
    parts = re.split(r"(<h3[^>]*>.*?</h3>)", html, flags=re.S)
    return {re.sub(r"<[^>]+>|&para;|\s+", " ", head).split()[0]: body
            for head, body in zip(parts[1::2], parts[2::2])}


def test_the_site_builds_strictly_with_every_name_and_argument(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    entries = {}
    for module in ("keras_relu", "search"):
        entries.update(_headings((site / "api" / module / "index.html").read_text()))
    for name, obj in _public_objects():
        if name.count(".") > 1:
            continue  # a class's members are on its entry
        assert name in entries, name
        if inspect.isclass(obj) and issubclass(obj, Exception):
            continue
        for param in inspect.signature(obj).parameters:
            assert param in entries[name], (name, param)
    for page in ("guides/results", "performance", "science", "changelog"):
        assert (site / page / "index.html").exists(), page


def _run(command, cwd, timeout=600):
    proc = subprocess.run(command, cwd=cwd, env=worker_env(), capture_output=True, text=True,
                          timeout=timeout, shell=isinstance(command, str))
    assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


def _smaller(language, code):
    for readme_text, smaller in SMALLER[language]:
        if readme_text in code:
            code = code.replace(readme_text, smaller)
    return code


def _bash_line(line, cwd):
    """Runs one line of a README bash block, or checks what cannot run inside a test."""
    extras = set(tomllib_project()["optional-dependencies"])
    for part in [p.strip() for p in line.split("&&")]:
        words = shlex.split(part)
        if words[:3] == ["pip", "install", "-e"]:
            wanted = re.fullmatch(r"\.\[([\w,]+)\]", words[3]).group(1).split(",")
            assert set(wanted) <= extras, part  # the extras exist (installing is CI's job)
        elif words == ["python", "tests/run.py"]:
            assert part in (ROOT / ".ci" / "run").read_text()  # CI runs it: the whole suite
        elif words[:2] == ["keras-relu", "ui"]:
            proc, url = start_ui(cwd, free_port(), env=worker_env())
            proc.terminate()
            proc.wait(timeout=30)
            assert url.startswith("http://127.0.0.1:")
        elif words[0] == "keras-relu":
            _run([sys.executable, "-m", "search.cli", *shlex.split(_smaller("bash", part))[1:]],
                 cwd)
        else:
            raise AssertionError(f"the README's `{part}` has no rule here to run or check it")


def tomllib_project():
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_code_block_of_the_readme_runs(tmp_path):
    blocks = readme_blocks()
    assert {language for _, language, _ in blocks} <= {"python", "bash"}
    python = "\n".join(code for _, language, code in blocks if language == "python")
    for readme_text, _ in SMALLER["python"]:
        assert readme_text in python, f"SMALLER is out of date: no {readme_text!r} in the README"
    script = _smaller("python", python)
    (tmp_path / "readme.py").write_text(script)
    out = _run([sys.executable, "readme.py"], tmp_path)
    assert "Best: trial" in out  # the search's report was printed
    for _, language, code in blocks:
        if language == "bash":
            for line in code.splitlines():
                line = line.split("#")[0].strip()
                if line:
                    _bash_line(line, tmp_path)
    assert len(blocks) >= 4


def test_the_readme_links_to_files_that_exist():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert len(local) > 10
    assert [link for link in local if not (ROOT / link).exists()] == []
    assert len(text.splitlines()) <= 200
