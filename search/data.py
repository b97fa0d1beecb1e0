"""Datasets: digits (bundled, default), synthetic, keras.datasets, and npz:PATH.

Every loader returns a `Dataset` with a deterministic train/validation split (by seed)
and normalised float32 inputs: images scaled to [0, 1], vectors standardised with the
training statistics.
"""

import dataclasses
import pathlib
import zipfile

import numpy as np

from search import UsageError, checks

KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = ("digits", "synthetic", *KERAS_DATASETS, "npz:PATH")


class DatasetUnavailable(RuntimeError):
    """A data set that exists but cannot be fetched here (no network, no cache)."""


@dataclasses.dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @property
    def num_classes(self):
        return int(max(self.y_train.max(), self.y_val.max())) + 1

    @property
    def input_shape(self):
        return self.x_train.shape[1:]

    @property
    def is_image(self):
        return self.x_train.ndim == 4


def slug(spec):
    """A short name for a dataset spec, usable as a study name: `npz:a/b.npz` -> `npz-b`."""
    if spec.startswith("arrays-"):
        return "arrays"
    return f"npz-{pathlib.Path(spec[4:]).stem}" if spec.startswith("npz:") else spec


def check_spec(spec):
    """Raise UsageError unless `spec` names a known dataset (npz files are checked on load)."""
    if spec.startswith("npz:") and spec[4:]:
        return
    if spec not in DATASETS:
        raise UsageError(f"unknown dataset {spec!r}; valid: {', '.join(DATASETS)}")


def load(spec, seed=0, samples=2000, features=20, classes=4, val_fraction=0.2):
    """The `Dataset` for `spec` (see DATASETS); synthetic data is sized by the arguments."""
    check_spec(spec)
    if spec == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return _split(spec, x, y, None, None, seed, val_fraction)
    if spec == "synthetic":
        from sklearn.datasets import make_classification

        if samples < 10 or features < 2 or classes < 2:
            raise UsageError("synthetic data needs samples >= 10, features >= 2, classes >= 2")
        x, y = make_classification(
            n_samples=samples, n_features=features, n_informative=max(2, features // 2),
            n_classes=classes, n_clusters_per_class=1, random_state=seed,
        )
        return _split(spec, x, y, None, None, seed, val_fraction)
    if spec in KERAS_DATASETS:
        return _keras_dataset(spec, seed, val_fraction)
    return _npz(spec, seed, val_fraction)


def from_arrays(data, validation_data=None, seed=0, val_fraction=0.2):
    """The `Dataset` of in-memory arrays: `data=(x_train, y_train)`, and optionally
    `validation_data=(x_val, y_val)` (else a split by seed). Named by its content."""
    (x, y), (x_val, y_val) = _pair(data, "data"), _pair(validation_data, "validation_data")
    return _split(f"arrays-{fingerprint(x, y, x_val, y_val)}", x, y, x_val, y_val, seed,
                  val_fraction)


def save_arrays(data, validation_data, folder):
    """Write the arrays as `<folder>/<fingerprint>.npz` (for workers in other processes)
    and return the `npz:PATH` spec that loads them."""
    (x, y), (x_val, y_val) = _pair(data, "data"), _pair(validation_data, "validation_data")
    path = pathlib.Path(folder).resolve() / f"arrays-{fingerprint(x, y, x_val, y_val)}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {} if x_val is None else {"x_val": x_val, "y_val": y_val}
        np.savez(path, x_train=x, y_train=y, **extra)
    return f"npz:{path}"


def fingerprint(*arrays):
    """12 hex digits identifying the content of `arrays` (None entries allowed)."""
    import hashlib

    digest = hashlib.sha1()
    for a in arrays:
        if a is not None:
            a = np.ascontiguousarray(a)
            digest.update(f"{a.dtype}{a.shape}".encode())
            digest.update(a.tobytes())
    return digest.hexdigest()[:12]


def _pair(arrays, what):
    if arrays is None:
        return None, None
    try:
        x, y = arrays
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a pair of arrays (x, y)") from None
    return np.asarray(x), np.asarray(y)


def _keras_dataset(name, seed, val_fraction):
    import keras

    try:
        (x, y), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DatasetUnavailable(
            f"dataset {name} could not be downloaded and is not cached in ~/.keras/datasets "
            f"({reason}); use --dataset digits or npz:PATH"
        ) from None
    # The official test split stays untouched; validation comes from the training split.
    return _split(name, x, y, None, None, seed, val_fraction)


def _npz(spec, seed, val_fraction):
    path = pathlib.Path(spec[4:])
    if not path.is_file():
        raise UsageError(f"npz file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path} is not an npz file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {key: arrays[key] for key in arrays.files}
    except Exception as err:
        raise UsageError(f"{path} is not a readable npz file: {err}") from None
    missing = [key for key in ("x_train", "y_train") if key not in found]
    if missing:
        raise UsageError(f"{path} lacks {' and '.join(missing)} (has: {', '.join(found) or 'nothing'})")
    if ("x_val" in found) != ("y_val" in found):
        raise UsageError(f"{path} has only one of x_val and y_val")
    return _split(spec, found["x_train"], found["y_train"], found.get("x_val"),
                  found.get("y_val"), seed, val_fraction)


def _labels(y, where):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = y.argmax(axis=1)
    y = y.reshape(len(y))
    if not np.issubdtype(y.dtype, np.number) or np.any(y < 0) or np.any(y != np.round(y)):
        raise UsageError(f"{where}: labels must be class indices 0..n-1 (or one-hot)")
    return y.astype("int32")


def _split(name, x, y, x_val, y_val, seed, val_fraction):
    checks.check_arrays(name, x, y, x_val, y_val)  # finite numbers, sane labels: before any work
    x, y = np.asarray(x), _labels(y, name)
    if len(x) != len(y) or len(x) < 2:
        raise UsageError(f"{name}: x_train and y_train must have the same length >= 2")
    if x_val is None:
        order = np.random.default_rng(seed).permutation(len(x))
        n_val = max(1, int(round(len(x) * val_fraction)))
        x, y, x_val, y_val = x[order[n_val:]], y[order[n_val:]], x[order[:n_val]], y[order[:n_val]]
    else:
        x_val, y_val = np.asarray(x_val), _labels(y_val, name)
        if len(x_val) != len(y_val) or x_val.shape[1:] != x.shape[1:]:
            raise UsageError(f"{name}: x_val/y_val do not match x_train/y_train in shape")
    x, x_val = _normalise(x, x_val)
    return Dataset(name, x, y, x_val, y_val)


def _normalise(x, x_val):
    if x.ndim == 3:  # grey images without a channel axis
        x, x_val = x[..., None], x_val[..., None]
    if x.ndim not in (2, 4):
        raise UsageError(f"inputs must be vectors (n, features) or images (n, h, w[, c]); got {x.shape}")
    if x.ndim == 4:
        scale = 255.0 if x.dtype == np.uint8 or x.max() > 1.0 else 1.0
        return (x / scale).astype("float32"), (x_val / scale).astype("float32")
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-7
    return ((x - mean) / std).astype("float32"), ((x_val - mean) / std).astype("float32")
