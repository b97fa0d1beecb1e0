"""The README's code blocks, for the tests that run them (test_docs.py, test_wheel.py)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def readme_blocks(path=ROOT / "README.md"):
    """[(section heading, language, code)] of every fenced block, in order."""
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        headings = re.findall(r"^## (.+)$", text[:match.start()], re.M)
        blocks.append((headings[-1] if headings else "", match.group(1), match.group(2)))
    return blocks


def library_example():
    """The README's first Python block: the library on its own (Keras, NumPy, scikit-learn's
    digits), which the wheel test runs from the installed wheel."""
    return next(code for _, language, code in readme_blocks() if language == "python")
