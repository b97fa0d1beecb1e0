"""Data and models as users have them, importable by search workers: digits as a
`keras.utils.PyDataset`, `tf.data` pipelines and a torch `DataLoader`; plain factories
(one of them a `keras.applications` network); PNG folders of class sub-folders."""

import os

import keras
import numpy as np
from sklearn.datasets import load_digits

X, Y = load_digits(return_X_y=True)
X, Y = (X / 16.0).astype("float32"), Y.astype("int32")
SPLITS = {"train": (0, 1000), "val": (1000, 1300), "test": (1300, 1600)}


class Digits(keras.utils.PyDataset):
    """One split of digits in batches of 64, sliced on the fly."""

    def __init__(self, split, batch_size=64, **kwargs):
        super().__init__(**kwargs)
        self.lo, self.hi = SPLITS[split]
        self.batch_size = batch_size

    def __len__(self):
        return -(-(self.hi - self.lo) // self.batch_size)

    def __getitem__(self, index):
        start = self.lo + index * self.batch_size
        stop = min(self.hi, start + self.batch_size)
        return X[start:stop], Y[start:stop]


def pydatasets():
    return Digits("train"), Digits("val"), Digits("test")


def tf_pipelines():
    """The training split as a function: each trial gets a fresh, shuffled pipeline."""
    import tensorflow as tf

    def split(name):
        lo, hi = SPLITS[name]
        return tf.data.Dataset.from_tensor_slices((X[lo:hi], Y[lo:hi])).batch(64)

    return (lambda: split("train").shuffle(256, seed=0)), split("val"), split("test")


def loaders():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    def split(name, shuffle=False):
        lo, hi = SPLITS[name]
        return DataLoader(TensorDataset(torch.tensor(X[lo:hi]), torch.tensor(Y[lo:hi])),
                          batch_size=64, shuffle=shuffle)

    return split("train", shuffle=True), split("val"), split("test")


def mlp(input_shape, num_classes):
    """A plain factory: knows nothing of the search's cures."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
    x = keras.layers.Activation("relu", name="hidden_relu")(keras.layers.Dense(16)(x))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def cnn(input_shape, num_classes):
    """A plain factory for images."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv")(inputs)
    x = keras.layers.Activation("relu", name="conv2_relu")(keras.layers.Conv2D(8, 3)(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def mobilenet(input_shape, num_classes):
    """A keras.applications network: plain ReLUs, hard-sigmoid gates (ReLU6)."""
    return keras.applications.MobileNetV3Small(
        input_shape=input_shape, weights=None, classes=num_classes, include_preprocessing=False)


def write_pngs(folder, classes=3, per_class=12, size=32, seed=0):
    """`folder/c<k>/<i>.png`: class k is a bright square at a place of its own, plus noise."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        os.makedirs(os.path.join(folder, f"c{k}"), exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (size, size, 3)).astype("uint8")
            at = 4 + 8 * k
            image[at:at + 8, at:at + 8] = 230
            keras.utils.save_img(os.path.join(folder, f"c{k}", f"{i}.png"), image, scale=False)
    return folder
