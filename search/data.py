"""Datasets: digits (bundled, default), synthetic, keras.datasets, npz:PATH, arrays.

Every loader returns a `Dataset` with train, validation and held-out test splits and
normalised float32 inputs: images scaled to [0, 1], vectors standardised with the
training statistics. A test split that is not given (mnist, fashion_mnist and cifar10
have their official one; an npz file may hold `x_test, y_test`) is cut off first, 20% by
seed, then validation, 20% of the rest unless given: digits' 1,797 images become 1,150
train, 288 validation, 359 test. The search never sees the test split; only the best
model is evaluated on it, once.
"""

import dataclasses
import pathlib
import zipfile

import numpy as np

from search import UsageError, checks

KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = ("digits", "synthetic", *KERAS_DATASETS, "npz:PATH", "images:DIR", "data:REF")
REFERENCE = "data:"  # data:module:function or data:file.py:function (--data)


class DatasetUnavailable(RuntimeError):
    """A data set that exists but cannot be fetched here (no network, no cache)."""


SPLITS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
AS_GIVEN = "keras_relu_as_given"  # in an npz file: inputs not to be normalised


@dataclasses.dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    targets: bool = False  # labels as given (a model's own loss), not class indices

    @property
    def num_classes(self):
        """Classes (largest label + 1); for targets, their trailing size."""
        if self.targets:
            return int(self.y_train.shape[-1]) if self.y_train.ndim > 1 else 1
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max())) + 1

    @property
    def input_shape(self):
        return self.x_train.shape[1:]

    @property
    def is_image(self):
        return self.x_train.ndim == 4

    has_test = True  # every array data set has a held-out test split (given or cut off)
    default_loss = None  # labels are class indices (one-hot rows are made indices)

    def fit_kwargs(self, batch_size):
        """What `model.fit` takes as its training data."""
        return {"x": self.x_train, "y": self.y_train, "batch_size": batch_size}

    def validation_data(self):
        return self.x_val, self.y_val

    def evaluate_kwargs(self, split, batch_size):
        """What `model.evaluate` takes for `split` ("val" or "test")."""
        return {"x": getattr(self, f"x_{split}"), "y": getattr(self, f"y_{split}"),
                "batch_size": batch_size}

    def steps_per_epoch(self, batch_size):
        return -(-len(self.x_train) // batch_size)

    def probe(self):
        """The validation inputs the dead-neuron monitor draws its probe from."""
        return self.x_val

    def sample(self, count=2):
        """(inputs, labels) of the first `count` validation samples."""
        return self.x_val[:count], self.y_val[:count]

    def content_fingerprint(self):
        """12 hex digits identifying every split's content."""
        return fingerprint(self.x_train, self.y_train, self.x_val, self.y_val, self.x_test,
                           self.y_test)


def slug(spec):
    """A short name for a dataset spec, usable as a study name: `npz:a/b.npz` -> `npz-b`,
    `images:a/flowers` -> `images-flowers`, `data:my_data.py:load` -> `data-load`."""
    if spec.startswith(("arrays-", "pipeline-")):
        return spec.partition("-")[0]
    if spec.startswith("npz:"):
        return f"npz-{pathlib.Path(spec[4:]).stem}"
    if spec.startswith("images:"):
        return f"images-{pathlib.Path(spec[7:]).name or 'images'}"
    if spec.startswith(REFERENCE):
        return f"data-{spec.rpartition(':')[2]}"
    return spec


def check_spec(spec):
    """Raise UsageError unless `spec` names a known dataset (files are checked on load)."""
    if spec.startswith(("npz:", "images:", REFERENCE)) and spec.partition(":")[2]:
        return
    if spec not in DATASETS:
        raise UsageError(f"unknown dataset {spec!r}; valid: {', '.join(DATASETS)}")


def load(spec, seed=0, samples=2000, features=20, classes=4, val_fraction=0.2,
         targets=False):
    """The `Dataset` for an array spec (see DATASETS; `search.sources.load` takes every
    spec); synthetic data is sized by the arguments. `targets=True` keeps an npz file's
    labels as they are (a model's own loss)."""
    check_spec(spec)
    if spec.startswith(("images:", REFERENCE)):
        raise UsageError(f"{spec}: streamed, not arrays; load it with search.sources.load")
    if spec == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return _split(spec, {"x_train": x, "y_train": y}, seed, val_fraction)
    if spec == "synthetic":
        from sklearn.datasets import make_classification

        if samples < 10 or features < 2 or classes < 2:
            raise UsageError("synthetic data needs samples >= 10, features >= 2, classes >= 2")
        x, y = make_classification(
            n_samples=samples, n_features=features, n_informative=max(2, features // 2),
            n_classes=classes, n_clusters_per_class=1, random_state=seed,
        )
        return _split(spec, {"x_train": x, "y_train": y}, seed, val_fraction)
    if spec in KERAS_DATASETS:
        return _keras_dataset(spec, seed, val_fraction)
    return _npz(spec, seed, val_fraction, targets)


def from_arrays(data, validation_data=None, test_data=None, seed=0, targets=False):
    """The `Dataset` of in-memory arrays `data=(x, y)`, `validation_data` and `test_data`
    (each cut off by seed when not given). Named by its content. The inputs are used as
    they are (float32), so the fitted model takes what the caller has; `targets=True`
    keeps the labels as they are too (for a model compiled with its own loss)."""
    arrays = _arrays(data, validation_data, test_data)
    return _split(f"arrays-{fingerprint(*arrays.values())}", arrays, seed, targets=targets,
                  normalise=False)


def save_arrays(data, validation_data, test_data, folder):
    """Write the arrays as `<folder>/arrays-<fingerprint>.npz` (for workers in other
    processes) and return the `npz:PATH` spec that loads them."""
    arrays = _arrays(data, validation_data, test_data)
    path = pathlib.Path(folder).resolve() / f"arrays-{fingerprint(*arrays.values())}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays, **{AS_GIVEN: True})
    return f"npz:{path}"


def _arrays(data, validation_data, test_data):
    found = {}
    for (x, y), part in ((_pair(data, "data"), "train"), (_pair(validation_data,
                         "validation_data"), "val"), (_pair(test_data, "test_data"), "test")):
        if x is not None:
            found.update({f"x_{part}": x, f"y_{part}": y})
    if "x_train" not in found:
        raise UsageError("data must be a pair of arrays (x, y)")
    return found


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
    return _split(name, {"x_train": x, "y_train": y, "x_test": x_test, "y_test": y_test},
                  seed, val_fraction)


def _npz(spec, seed, val_fraction, targets=False):
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
    for part in ("val", "test"):
        if (f"x_{part}" in found) != (f"y_{part}" in found):
            raise UsageError(f"{path} has only one of x_{part} and y_{part}")
    return _split(spec, {k: v for k, v in found.items() if k in SPLITS}, seed, val_fraction,
                  targets=targets, normalise=not bool(found.get(AS_GIVEN, False)))


def _labels(y, where):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = y.argmax(axis=1)
    y = y.reshape(len(y))
    if not np.issubdtype(y.dtype, np.number) or np.any(y < 0) or np.any(y != np.round(y)):
        raise UsageError(f"{where}: labels must be class indices 0..n-1 (or one-hot)")
    return y.astype("int32")


def _targets(y, where, targets):
    if not targets:
        return _labels(y, where)
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.number):
        raise UsageError(f"{where}: targets must be numbers")
    return y.astype("float32")


def _split(name, arrays, seed, val_fraction=0.2, test_fraction=0.2, targets=False,
           normalise=True):
    """Check the given splits, cut the missing test and validation splits by seed, and
    normalise with the training statistics (else only make them float32)."""
    checks.check_arrays(name, arrays, targets)  # finite numbers, sane labels: before any work
    arrays = {k: np.asarray(v) if k.startswith("x") else _targets(v, name, targets)
              for k, v in arrays.items()}
    x, y = arrays["x_train"], arrays["y_train"]
    if len(x) != len(y) or len(x) < 3:
        raise UsageError(f"{name}: x_train and y_train must have the same length >= 3")
    order = np.random.default_rng(seed).permutation(len(x))
    for part, fraction in (("test", test_fraction), ("val", val_fraction)):
        if f"x_{part}" in arrays:
            xs, ys = arrays[f"x_{part}"], arrays[f"y_{part}"]
            if len(xs) != len(ys) or xs.shape[1:] != x.shape[1:] or len(xs) < 1:
                raise UsageError(f"{name}: x_{part}/y_{part} do not match x_train/y_train "
                                 f"in shape ({xs.shape} and {ys.shape} against {x.shape})")
            continue
        cut = max(1, int(round(len(order) * fraction)))
        arrays[f"x_{part}"], arrays[f"y_{part}"] = x[order[:cut]], y[order[:cut]]
        order = order[cut:]
    x, y = x[np.sort(order)], y[np.sort(order)]
    x, x_val, x_test = (_normalise(x, arrays["x_val"], arrays["x_test"]) if normalise else
                        [a.astype("float32") for a in (x, arrays["x_val"], arrays["x_test"])])
    return Dataset(name, x, y, x_val, arrays["y_val"], x_test, arrays["y_test"], targets)


def _normalise(x, *others):
    """`x` and `others` scaled by `x`'s statistics: images to [0, 1], vectors standardised."""
    if x.ndim == 3:  # grey images without a channel axis
        x, others = x[..., None], [o[..., None] for o in others]
    if x.ndim not in (2, 4):
        raise UsageError(f"inputs must be vectors (n, features) or images (n, h, w[, c]); got {x.shape}")
    if x.ndim == 4:
        scale = 255.0 if x.dtype == np.uint8 or x.max() > 1.0 else 1.0
        return [(a / scale).astype("float32") for a in (x, *others)]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-7
    return [((a - mean) / std).astype("float32") for a in (x, *others)]
