"""Runs the test suite once per Keras backend, each in its own process.

    python tests/run.py                        # tensorflow, jax and torch
    python tests/run.py --backends jax -- -k sugar
"""

import argparse
import os
import re
import subprocess
import sys

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.exit(2, f"unknown backend(s): {', '.join(sorted(unknown))}\n")

    totals = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    status = 0
    for backend in backends:
        print(f"==== KERAS_BACKEND={backend}", flush=True)
        env = dict(os.environ, KERAS_BACKEND=backend)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", *args.pytest_args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        sys.stdout.write(proc.stdout)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        for count, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary):
            totals["error" if word.startswith("error") else word] += int(count)
        if proc.returncode != 0:  # includes 5, "no tests collected"
            status = 1
            print(f"==== {backend}: pytest exited {proc.returncode}", flush=True)
    failed = totals["failed"] + totals["error"]
    print(f"all backends: {totals['passed']} passed, {failed} failed, {totals['skipped']} skipped")
    return status


if __name__ == "__main__":
    sys.exit(main())
