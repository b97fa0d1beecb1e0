"""Data as the user has it: `tf.data` pipelines, `keras.utils.PyDataset`s, torch `DataLoader`s.

`StreamData` keeps each split a pipeline end to end (the search never loads a pipeline's
data set into memory) and offers what the search reads from arrays (`search.data.Dataset`)
the same way: the input shape and classes, the steps per epoch, the monitor's probe (the
first validation samples) and the data checks, all read off the first batches. A split
may be given as a zero-argument function that returns a fresh pipeline; it is called for
every trial. A one-shot generator is refused: Keras replays only its first two batches on
a second pass.
"""

import collections.abc
import inspect

import numpy as np

from search import UsageError, checks

PEEK_SAMPLES = 2048  # samples read off the first batches for classes and checks
PIPELINES = "a keras.utils.PyDataset, a tf.data.Dataset, a torch DataLoader"


def pipeline_kind(value):
    """"tf.data", "PyDataset" or "DataLoader"; None for anything else (arrays)."""
    cls = type(value)
    module = cls.__module__
    if module.startswith("tensorflow") and hasattr(value, "element_spec"):
        return "tf.data"
    if module.startswith("torch.utils.data") or any(
            c.__module__.startswith("torch.utils.data") and c.__name__ == "DataLoader"
            for c in cls.__mro__):
        return "DataLoader"
    if any(c.__name__ == "PyDataset" and c.__module__.startswith("keras") for c in cls.__mro__):
        return "PyDataset"
    return None


def is_generator(value):
    return inspect.isgenerator(value) or (isinstance(value, collections.abc.Iterator)
                                          and pipeline_kind(value) is None)


def is_pipeline(value):
    """Whether `value` is a pipeline, a generator or a function returning one (not arrays)."""
    if value is None or isinstance(value, (tuple, list, np.ndarray)):
        return False
    return pipeline_kind(value) is not None or is_generator(value) or callable(value)


def _open(source, what):
    """A pipeline from `source` (itself, or what the function `source` returns)."""
    value = source
    if callable(source) and pipeline_kind(source) is None:
        try:
            value = source()
        except Exception as err:
            raise UsageError(f"{what}: the function raised {type(err).__name__}: {err}") from None
    if is_generator(value):
        raise UsageError(f"{what}: a generator is read once; Keras replays only its first two "
                         f"batches on a second pass: give {PIPELINES}, or a function that "
                         "returns a fresh one")
    if pipeline_kind(value) is None:
        raise UsageError(f"{what}: expected {PIPELINES}, a function returning one, or arrays "
                         f"(x, y); got {type(value).__name__}")
    return value


def _numpy(value):
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def batches(pipeline, samples=PEEK_SAMPLES):
    """(inputs, labels) as NumPy of the first batches of `pipeline`, up to `samples`."""
    kind = pipeline_kind(pipeline)
    if kind == "PyDataset":
        source = (pipeline[i] for i in range(len(pipeline)))
    else:
        source = iter(pipeline)
    xs, ys, seen = [], [], 0
    for batch in source:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2 or \
                isinstance(batch[0], (dict, tuple, list)):
            raise UsageError("a pipeline's batches must be (inputs, labels) with one input "
                             f"array; got {type(batch).__name__}")
        xs.append(_numpy(batch[0]))
        ys.append(_numpy(batch[1]))
        seen += len(xs[-1])
        if seen >= samples:
            break
    if not xs:
        raise UsageError("a pipeline yields no batch")
    return np.concatenate(xs)[:samples], np.concatenate(ys)[:samples]


def batch_count(pipeline):
    """Batches per pass over `pipeline`, or None where it cannot be told without a pass."""
    if pipeline_kind(pipeline) == "tf.data":
        count = int(pipeline.cardinality())
        return count if count > 0 else None
    try:
        return len(pipeline)
    except TypeError:
        return None


class StreamData:
    """Train, validation and (optionally) test pipelines; the interface of
    `search.data.Dataset` over them (see the module docstring)."""

    def __init__(self, name, train, validation, test=None, steps_per_epoch=None,
                 num_classes=None, probe_size=256, targets=False):
        self.name, self.targets = name, targets
        self._sources = {"train": train, "val": validation, "test": test}
        self.has_test = test is not None
        x, y = batches(self.open("train"))
        if validation is None:
            raise UsageError("a pipeline needs validation data (validation_data=): Keras' "
                             "validation_split works for arrays only")
        x_val, y_val = batches(self.open("val"))
        checks.check_arrays(name, {"x_train": x, "y_train": y, "x_val": x_val, "y_val": y_val},
                            targets)
        if x.shape[1:] != x_val.shape[1:]:
            raise UsageError(f"{name}: training inputs of shape {x.shape[1:]}, validation "
                             f"inputs of shape {x_val.shape[1:]}")
        self.input_shape = x.shape[1:]
        self._probe = x_val[:probe_size]
        self._sample = (x_val[:2], y_val[:2])
        self.first = (x[:64], y[:64], x_val[:64], y_val[:64])  # what identifies the data
        self.num_classes = num_classes or _classes(y, y_val, targets)
        one_hot = not targets and y.ndim == 2 and y.shape[1] > 1
        self.default_loss = "categorical_crossentropy" if one_hot else None
        self._steps = steps_per_epoch or batch_count(self.open("train"))
        if not self._steps:
            raise UsageError(f"{name}: cannot tell how many batches the training pipeline has "
                             "(an infinite or filtered tf.data pipeline); give steps_per_epoch")
        self.given_steps = steps_per_epoch

    def open(self, split):
        return _open(self._sources[split], f"{'validation' if split == 'val' else split} data")

    @property
    def is_image(self):
        return len(self.input_shape) == 3

    def fit_kwargs(self, batch_size):
        """The training pipeline; a PyDataset's batches in shuffled order (Keras shuffles
        nothing else: a tf.data pipeline or DataLoader shuffles itself)."""
        train = self.open("train")
        return {"x": train, "shuffle": pipeline_kind(train) == "PyDataset",
                **({"steps_per_epoch": self.given_steps} if self.given_steps else {})}

    def validation_data(self):
        return self.open("val")

    def evaluate_kwargs(self, split, batch_size):
        return {"x": self.open(split)}

    def steps_per_epoch(self, batch_size):
        return self._steps

    def probe(self):
        return self._probe

    def sample(self, count=2):
        return self._sample[0][:count], self._sample[1][:count]

    def content_fingerprint(self):
        """12 hex digits identifying the first batches of training and validation data."""
        from search.data import fingerprint

        return fingerprint(*self.first)


def _classes(y, y_val, targets):
    """Classes: one-hot labels' width, else the largest label of the first batches + 1."""
    if targets:
        return int(y.shape[-1]) if y.ndim > 1 else 1
    if y.ndim == 2 and y.shape[1] > 1:
        return int(y.shape[1])
    return int(max(y.max(), y_val.max())) + 1
