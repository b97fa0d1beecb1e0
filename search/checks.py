"""Data checks run when a data set is loaded, before any study, run or model exists.

Training finds bad data late and says it badly: NaN features give NaN losses (or, in one
validation row, a NaN `val_loss` next to a fine accuracy), strings a NumPy TypeError deep
in a fit, a label of 1e9 a 4 GB output layer. `check_arrays` says it in one line instead.
"""

import os

import numpy as np

from search import UsageError

MAX_CLASSES = 10_000  # more classes than this is a label mistake, unless told otherwise
MAX_CLASSES_ENV = "KERAS_RELU_MAX_CLASSES"


def max_classes():
    """The largest number of classes a data set may have (`KERAS_RELU_MAX_CLASSES`)."""
    text = os.environ.get(MAX_CLASSES_ENV, "")
    try:
        return max(2, int(text)) if text else MAX_CLASSES
    except ValueError:
        raise UsageError(f"{MAX_CLASSES_ENV} must be an integer, got {text!r}") from None


def check_arrays(name, arrays, targets=False):
    """Raise `UsageError` unless the features (`x_*` of `arrays`) are finite numbers and
    the labels (`y_*`) class indices (or one-hot rows) of at most `max_classes()` classes;
    with `targets`, labels need only be finite numbers."""
    for what, values in arrays.items():
        values = np.asarray(values)
        if what.startswith("x") or targets:
            _check_features(name, what, values)
        else:
            _check_labels(name, what, values)


def _check_features(name, what, x):
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) \
            or np.issubdtype(x.dtype, np.complexfloating):
        raise UsageError(f"{name}: {what} must hold numbers, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and x.size:
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1) if x.ndim else ~np.isfinite(x)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise UsageError(f"{name}: {what} has NaN or infinite values in {len(rows)} of "
                             f"{len(x)} rows (first: row {rows[0]})")


def _check_labels(name, what, y):
    if y.dtype == object or not np.issubdtype(y.dtype, np.number) \
            or np.issubdtype(y.dtype, np.complexfloating):
        raise UsageError(f"{name}: {what} must be class indices 0..n-1 (or one-hot), "
                         f"got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating) and y.size and not np.isfinite(y).all():
        raise UsageError(f"{name}: {what} has NaN or infinite labels")
    limit = max_classes()
    classes = y.shape[1] if y.ndim == 2 and y.shape[1] > 1 else (int(y.max()) + 1 if y.size else 0)
    if classes > limit:
        raise UsageError(f"{name}: {what} implies {classes} classes, more than {limit}; "
                         f"labels must be class indices 0..n-1 (set {MAX_CLASSES_ENV} "
                         "to allow more)")
