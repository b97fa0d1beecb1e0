"""Scenarios for `keras-relu compare`: data (train/val/test), model and training recipe.

Light at import (no Keras) so `keras-relu --help` stays fast. A scenario's model is
the built-in builder (`search.builders.build_default`) on its config, or its own builder
of the same protocol (VGG-16 and ResNet-18 for 32x32 images); activations always come
from `cures.activation()` and are named `activation_<i>`.

The data seam for tests: `load(scenario, dataset="synthetic")` gives a random stand-in
of the scenario's input shape and classes (class templates plus noise), so the CIFAR-10
scenarios run end to end where CIFAR-10 cannot be downloaded.
"""

import dataclasses

import numpy as np

from search.data import Dataset, DatasetUnavailable

ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "silu", "sugar_bsilu", "sugar_nelu")
DEFAULT = "digits-deep-mlp"


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    config: dict  # the trial config without "activation"
    epochs: int
    batch_size: int
    input_shape: tuple
    num_classes: int
    architecture: str = "mlp"  # "mlp" (builders.build_default), "vgg16" or "resnet18"


# digits-deep-mlp: 10 Dense layers of 32 units, He-normal initialisation, Adam at 1e-2,
# batch 64. Chosen by measuring (TensorFlow, 20 epochs, seeds 0 and 1): plain ReLU ended
# with 11% and 9% of its units dead (never positive on the validation probe) at 91-97%
# accuracy, SUGAR/B-SiLU with 5% at the same accuracy. At 3e-3 ReLU lost only ~6%; a
# 12x24 net behaved like 10x32; SGD at 5e-2 (momentum 0.9) diverged for both.
# Splits: a fixed 20% test set (seed 0), 20% of the rest for validation and the probe.
SCENARIOS = {
    "digits-deep-mlp": Scenario(
        "digits-deep-mlp",
        {"initializer": "he_normal", "batch_norm": False, "dropout": 0.0, "clipping": "none",
         "schedule": "constant", "learning_rate": 1e-2, "optimizer": "adam",
         "depth": 10, "width": 32},
        epochs=30, batch_size=64, input_shape=(64,), num_classes=10),
    # digits-deep-narrow: where ReLU dies hard. 20 Dense layers of 16 units, He normal,
    # Adam at 1e-2, batch 64, 20 epochs: plain ReLU ended with 23% and 39% of its units
    # dead (seeds 0, 1; TensorFlow), SUGAR/B-SiLU and ReLU with skip connections with 18-19%.
    "digits-deep-narrow": Scenario(
        "digits-deep-narrow",
        {"initializer": "he_normal", "batch_norm": False, "dropout": 0.0, "clipping": "none",
         "schedule": "constant", "learning_rate": 1e-2, "optimizer": "adam",
         "depth": 20, "width": 16},
        epochs=20, batch_size=64, input_shape=(64,), num_classes=10),
    # The SUGAR paper's recipe (arXiv 2505.22074): SGD at 1e-3 (no momentum named: none),
    # batch 128, no augmentation; CIFAR-10 from keras.datasets. Meant for a GPU.
    **{f"cifar10-{arch}": Scenario(
        f"cifar10-{arch}",
        {"initializer": "he_normal", "learning_rate": 1e-3, "optimizer": "sgd", "momentum": 0.0,
         "schedule": "constant", "clipping": "none"},
        epochs=100, batch_size=128, input_shape=(32, 32, 3), num_classes=10,
        architecture=arch) for arch in ("vgg16", "resnet18")},
}


def load(scenario, dataset="scenario", limit=None, seed=0):
    """(Dataset with train/val, x_test, y_test) for `scenario`; `limit` caps every split."""
    if dataset == "synthetic":
        splits = _synthetic(scenario.input_shape, scenario.num_classes, limit or 1000, seed)
    elif scenario.name.startswith("digits"):
        splits = _digits()
    else:
        splits = _cifar10()
    if limit:
        splits = [(x[:limit], y[:limit]) for x, y in splits]
    (x, y), (x_val, y_val), (x_test, y_test) = splits
    return Dataset(scenario.name, x, y, x_val, y_val, x_test, y_test), x_test, y_test


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = len(x) // 5
    test, rest = order[:n_test], order[n_test:]
    n_val = len(rest) // 5
    val, train = rest[:n_val], rest[n_val:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-7

    def norm(i):
        return ((x[i] - mean) / std).astype("float32"), y[i].astype("int32")

    return [norm(train), norm(val), norm(test)]


def _cifar10():
    import keras

    try:
        (x, y), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DatasetUnavailable(
            f"dataset cifar10 could not be downloaded and is not cached in ~/.keras/datasets "
            f"({reason})") from None
    y, y_test = y.reshape(-1).astype("int32"), y_test.reshape(-1).astype("int32")
    x, x_test = (x / 255.0).astype("float32"), (x_test / 255.0).astype("float32")
    # The last 5,000 training images validate (and probe); the official test set tests.
    return [(x[:-5000], y[:-5000]), (x[-5000:], y[-5000:]), (x_test, y_test)]


def _synthetic(shape, classes, n, seed):
    """A learnable random stand-in: one template per class plus noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0.0, 1.0, size=(classes, *shape))

    def split(count):
        y = rng.integers(0, classes, size=count).astype("int32")
        noise = rng.normal(0.0, 0.3, size=(count, *shape))
        return np.clip(templates[y] + noise, 0.0, 1.0).astype("float32"), y

    return [split(n), split(max(32, n // 4)), split(max(32, n // 4))]


def builder(scenario):
    """The model builder of `scenario` (the `search.builders` protocol)."""
    if scenario.architecture == "mlp":
        from search.builders import build_default

        return build_default
    from search import paper_models

    return {"vgg16": paper_models.build_vgg16, "resnet18": paper_models.build_resnet18}[
        scenario.architecture]
