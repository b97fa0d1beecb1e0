"""Runs the test suite once per Keras backend, each in its own process.

    python tests/run.py                        # tensorflow, jax and torch
    python tests/run.py --backends jax -- -k sugar
    python tests/run.py --jobs 1               # one backend at a time

A pass keeps about one core busy (its training is small; its subprocesses mostly wait), so
two passes run side by side by default; each pass's output is printed when it ends.
"""

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile

BACKENDS = ("tensorflow", "jax", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_pass(backend, pytest_args, basetemp):
    """One backend's pytest run: (its output, its exit code)."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", f"--basetemp={basetemp}", *pytest_args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return proc.stdout, proc.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--jobs", type=int, default=2, help="backend passes at once (default 2)")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.exit(2, f"unknown backend(s): {', '.join(sorted(unknown))}\n")
    if args.jobs < 1:
        parser.exit(2, f"--jobs must be at least 1, got {args.jobs}\n")

    totals = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    status, failures = 0, []
    with tempfile.TemporaryDirectory(prefix="keras-relu-tests-") as tmp, \
            concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        runs = {pool.submit(run_pass, b, args.pytest_args, os.path.join(tmp, b)): b
                for b in backends}
        for done in concurrent.futures.as_completed(runs):
            name = runs[done]
            output, code = done.result()
            print(f"==== KERAS_BACKEND={name}", flush=True)
            sys.stdout.write(output)
            summary = output.strip().splitlines()[-1] if output.strip() else ""
            failures += [f"{name}: {line}" for line in output.splitlines()
                         if line.startswith(("FAILED ", "ERROR "))]
            for count, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary):
                totals["error" if word.startswith("error") else word] += int(count)
            if code != 0:  # includes 5, "no tests collected"
                status = 1
                print(f"==== {name}: pytest exited {code}", flush=True)
    failed = totals["failed"] + totals["error"]
    if failures:  # last, where the tail of a long log still names them
        print("\n".join(failures))
    print(f"all backends: {totals['passed']} passed, {failed} failed, {totals['skipped']} skipped")
    return status


if __name__ == "__main__":
    sys.exit(main())
