"""The GPU machine's package set, imposed on this machine. `benchmarks/gpu_check.py
--cpu-smoke` puts this folder on PYTHONPATH, so Python imports this file at start-up in
every process of the check (search workers too). It reads the module names listed in
$KERAS_RELU_GPU_MASK (top-level, or two levels in a namespace package such as
`opentelemetry`): those installed here but neither on the GPU machine (packages.txt) nor
among the carried wheels (gpu_wheels.txt). Importing them fails as it would there, and
`importlib.util.find_spec` says they are not installed. So a wheel missing from
gpu_wheels.txt fails the smoke run here. Distribution metadata stays visible: plugins
found through entry points must be kept off (PYTEST_DISABLE_PLUGIN_AUTOLOAD).
"""

import importlib.abc
import os
import sys


class _Masked(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if _masked(self.names, name):  # two levels: a namespace package's sub-packages
            raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU machine "
                                      "and not a carried wheel)", name=name)
        return None


def _masked(names, name):
    parts = name.split(".")
    return parts[0] in names or ".".join(parts[:2]) in names


def _install():
    import importlib.util

    path = os.environ.get("KERAS_RELU_GPU_MASK")
    if not (path and os.path.exists(path)):
        return
    with open(path) as f:
        names = frozenset(line.strip() for line in f if line.strip())
    sys.meta_path.insert(0, _Masked(names))
    find_spec = importlib.util.find_spec

    def masked_find_spec(name, package=None):  # "is it installed?" answers no, as there
        absolute = importlib.util.resolve_name(name, package) if name.startswith(".") else name
        return None if _masked(names, absolute) else find_spec(name, package)

    importlib.util.find_spec = masked_find_spec


_install()
