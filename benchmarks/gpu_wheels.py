"""Fetch the wheels benchmarks/gpu_check.py carries to the GPU machine, and check them.

    python benchmarks/gpu_wheels.py [--dest .whl] [--no-download]

Downloads exactly the wheels of gpu_wheels.txt (--no-deps: the list is the whole set) for
CPython 3.12 on x86-64 Linux, the GPU machine's Python, into DEST (git-ignored .whl/ by
default; other wheels there are removed, since two versions of one package stop the
install). Then checks that `pip install --no-index --no-deps --target` accepts them for
that Python, and that the working tree that travels (tracked and untracked, not ignored
files) and the wheels together stay under the machine's 64 MiB. Prints one line of sizes;
exit status 1 when a wheel is missing, refused or the total is too large.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WHEEL_LIST = os.path.join(HERE, "gpu_wheels.txt")
LIMIT_MIB = 64
# The GPU machine's interpreter; manylinux tags pip must be told one by one
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
          *[arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                            "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                            "manylinux1_x86_64") for arg in ("--platform", tag)]]


def canonical(name):
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def read_list(path=WHEEL_LIST):
    """[(name, version)] of the wheel list."""
    pins = []
    with open(path) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, _, version = line.partition("==")
                pins.append((name.strip(), version.strip()))
    return pins


def wheel_key(path):
    """(canonical name, version) of a wheel file."""
    name, version = os.path.basename(path).split("-")[:2]
    return canonical(name), version


def pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
                          capture_output=True, text=True)


def download(dest):
    """pip-downloads the list into `dest` after removing the wheels not on it; pip's
    CompletedProcess."""
    os.makedirs(dest, exist_ok=True)
    wanted = {(canonical(n), v) for n, v in read_list()}
    for path in glob.glob(os.path.join(dest, "*.whl")):
        if wheel_key(path) not in wanted:
            os.remove(path)
    return pip("download", "--no-deps", *TARGET, "-d", dest, "-r", WHEEL_LIST)


def problems(dest):
    """What is wrong with the wheels in `dest`, in a few words each: missing, extra, or
    refused by `pip install --no-index --no-deps --target` for the GPU machine's Python."""
    have = {wheel_key(p): p for p in glob.glob(os.path.join(dest, "*.whl"))}
    wanted = {(canonical(n), v) for n, v in read_list()}
    found = [f"missing {n}=={v}" for n, v in sorted(wanted - set(have))]
    found += [f"not on the list {os.path.basename(have[k])}" for k in sorted(set(have) - wanted)]
    if not found:
        with tempfile.TemporaryDirectory() as target:
            proc = pip("install", "-q", "--no-index", "--no-deps", "--no-compile",
                       "--target", target, *TARGET, *sorted(have.values()))
        if proc.returncode:
            found.append(f"pip install --target refused them: {proc.stderr.strip()[-600:]}")
    return found


def tree_bytes():
    """Bytes of the files that travel with the working tree: git's tracked files and the
    untracked ones it does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    paths = {os.path.join(ROOT, p) for p in listed.split("\0") if p}
    return sum(os.path.getsize(p) for p in paths if os.path.isfile(p))


def sizes(dest):
    """(wheels MiB, tree MiB) as floats."""
    wheels = sum(os.path.getsize(p) for p in glob.glob(os.path.join(dest, "*.whl")))
    return wheels / 2**20, tree_bytes() / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=os.path.join(ROOT, ".whl"))
    parser.add_argument("--no-download", action="store_true", help="only check DEST")
    args = parser.parse_args()
    if not args.no_download:
        proc = download(args.dest)
        if proc.returncode:
            sys.exit(f"gpu_wheels.py: pip download failed: {proc.stderr.strip()[-800:]}")
    found = problems(args.dest)
    wheels, tree = sizes(args.dest)
    print(f"{len(read_list())} wheels {wheels:.1f} MiB + working tree {tree:.1f} MiB = "
          f"{wheels + tree:.1f} MiB (limit {LIMIT_MIB} MiB) in {args.dest}")
    if wheels + tree >= LIMIT_MIB:
        found.append(f"{wheels + tree:.1f} MiB is over the {LIMIT_MIB} MiB that can travel")
    for problem in found:
        print(f"gpu_wheels.py: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
