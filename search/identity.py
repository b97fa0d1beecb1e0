"""What identifies a data set to a study: recorded when the study is made, compared on
every resume and by every worker that joins, so that trials on other data are never
ranked together.

An npz file is identified by its content, whatever path names it (`npz:./data.npz` and
its absolute path are one data set; the same path rewritten is another), cheaply: each
array's dtype and shape and the CRC-32 checksum that the zip directory keeps for each
member, written with the file and checked by every full read of it, so no array is read
to identify it (milliseconds for gigabytes). Named data sets are identified by their
name; in-memory arrays and pipelines given as objects by the fingerprint in theirs
(`search.data.from_arrays`, `search.sources.from_sources`); an image folder by its files'
paths within it and sizes (no image is read); a `data:` function by its reference.
"""

import hashlib
import pathlib
import zipfile

import numpy as np

from search import UsageError


def data_identity(spec):
    """What a study records of the data set `spec` names (see the module docstring)."""
    if spec.startswith("npz:"):
        return f"npz content {npz_fingerprint(spec[4:])}"
    if spec.startswith("images:"):
        return f"images content {folder_fingerprint(spec[7:])}"
    return spec


def same_data(recorded, identity):
    """Whether a study that recorded `recorded` was run on the data of `identity`. A study
    made before content identities recorded an npz file's path: the file at that path
    now stands for it."""
    if recorded == identity:
        return True
    if isinstance(recorded, str) and recorded.startswith("npz:"):
        try:
            return data_identity(recorded) == identity
        except UsageError:  # that file is gone or unreadable
            return False
    return False


def check_same_data(study_name, recorded, identity):
    """Refuse, in one line, data other than what study `study_name` recorded."""
    if not same_data(recorded, identity):
        raise UsageError(f"study {study_name!r} was run on other data ({recorded}; here "
                         f"{identity}); choose another --study-name")


def folder_fingerprint(folder):
    """12 hex digits identifying an image folder: each file's path within it and size."""
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise UsageError(f"images:{folder}: no such folder")
    digest = hashlib.sha1()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:12]


def npz_fingerprint(path):
    """12 hex digits identifying the arrays of an npz file: each member's name, size,
    CRC-32 (from the zip directory) and its array's dtype and shape (its .npy header)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UsageError(f"npz file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path} is not an npz file")
    digest = hashlib.sha1()
    with zipfile.ZipFile(path) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            digest.update(f"{info.filename}:{info.file_size}:{info.CRC:08x}:".encode())
            digest.update(_npy_header(archive, info).encode())
    return digest.hexdigest()[:12]


def _npy_header(archive, info):
    """`dtype shape` of an .npy member, read from its header ('' for anything else)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with archive.open(info) as member:
            shape, _, dtype = readers[np.lib.format.read_magic(member)](member)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return ""  # the CRC-32 covers the header too
    return f"{dtype.str} {shape}"
