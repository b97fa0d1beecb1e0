"""A search trial fed by a pipeline against the same trial fed by arrays, side by side.

    KERAS_BACKEND=tensorflow python benchmarks/bench_stream_time.py [--rounds 5] [--epochs 3]
        [--models mlp,cnn] [--keras-control]

The same arrays go in as they are (`search.data.Dataset`), as a `keras.utils.PyDataset`
slicing them, and as a `tf.data` pipeline over them (shuffled, batched, prefetched); a
second arrays row is the control. Each round runs one trial of every variant through the
shared trial runner (`search.trial.run_trial`: build, compile, fit with the dead-neuron
monitor, evaluate), in rotated order; the fastest round of each is compared with the
fastest arrays round. Models: the built-in MLP on digits (1,150 x 64), and a small CNN
factory on 2,000 random 32x32x3 images. Target: a pipeline trial at most 1.1x.
With `--keras-control`, two more rows time plain Keras on the same rounds (`fit` and
`evaluate` of a fresh copy of the trial's model, no search) on the arrays and on the
`tf.data` pipeline: what Keras itself costs for a pipeline on this backend.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from search.runtime import import_keras  # noqa: E402

keras = import_keras()

from search import data as datasets  # noqa: E402
from search.finished import BUILDER_ONLY, FinishedModel  # noqa: E402
from search.streams import StreamData  # noqa: E402
from search.trial import TrialSettings, run_trial  # noqa: E402

VARIANTS = ("arrays", "arrays_again", "pydataset", "tf_data")
CONFIG = {"activation": "sugar_bsilu", "initializer": "he_normal", "batch_norm": False,
          "dropout": 0.0, "clipping": "none", "schedule": "cosine", "learning_rate": 3e-3,
          "optimizer": "adam", "depth": 3, "width": 64}


class Slices(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        part = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[part], self.y[part]


def tf_pipeline(x, y, batch_size, shuffle):
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=0)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def variant(name, arrays, batch_size):
    if name.startswith("arrays"):
        return arrays
    splits = [(arrays.x_train, arrays.y_train), (arrays.x_val, arrays.y_val),
              (arrays.x_test, arrays.y_test)]
    if name == "pydataset":
        return StreamData(name, *(Slices(x, y, batch_size) for x, y in splits))
    return StreamData(name, lambda: tf_pipeline(*splits[0], batch_size, True),
                      *(tf_pipeline(x, y, batch_size, False) for x, y in splits[1:]))


def small_cnn(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def workload(model):
    """(arrays Dataset, builder, config) of a workload; a factory's config holds only the
    dimensions a finished model takes (as the search would drop the others)."""
    if model == "mlp":
        from search.builders import build_default

        return datasets.load("digits"), build_default, CONFIG
    rng = np.random.default_rng(0)
    x = rng.random((2000, 32, 32, 3)).astype("float32")
    y = (x[:, :16].mean(axis=(1, 2, 3)) > x[:, 16:].mean(axis=(1, 2, 3))).astype("int32")
    config = {k: v for k, v in CONFIG.items() if k not in BUILDER_ONLY}
    return datasets.from_arrays((x, y)), FinishedModel(small_cnn, "factory"), config


def plain_model(model, arrays):
    """The trial's architecture as plain Keras: the MLP's 3 x 64 ReLU, or the CNN."""
    shape, classes = arrays.x_train.shape[1:], int(arrays.y_train.max()) + 1
    if model == "cnn":
        return small_cnn(shape, classes)
    layers = [keras.layers.Dense(64, activation="relu") for _ in range(3)]
    return keras.Sequential([keras.Input(shape), *layers,
                             keras.layers.Dense(classes, activation="softmax")])


def keras_fit(model, arrays, pipeline, epochs, batch_size):
    """Plain Keras, no search: fit + evaluate on the arrays or on `tf.data` over them."""
    net = plain_model(model, arrays)
    net.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    splits = [(arrays.x_train, arrays.y_train), (arrays.x_val, arrays.y_val),
              (arrays.x_test, arrays.y_test)]
    if pipeline:
        train, val, test = (tf_pipeline(x, y, batch_size, i == 0)
                            for i, (x, y) in enumerate(splits))
        net.fit(train, epochs=epochs, validation_data=val, shuffle=False, verbose=0)
        net.evaluate(test, verbose=0)
    else:
        net.fit(*splits[0], batch_size=batch_size, epochs=epochs, validation_data=splits[1],
                shuffle=True, verbose=0)
        net.evaluate(*splits[2], batch_size=batch_size, verbose=0)


def bench(model, rounds, epochs, batch_size, keras_control=False):
    arrays, build, config = workload(model)
    variants = VARIANTS + (("keras_arrays", "keras_tf_data") if keras_control else ())
    data = {name: variant(name, arrays, batch_size) for name in VARIANTS}
    settings = TrialSettings(epochs=epochs, batch_size=batch_size)
    times = {name: [] for name in variants}
    run_trial(config, arrays, settings, number=0, engine="bench", build=build)  # warm-up
    for r in range(rounds):
        for name in variants[r % len(variants):] + variants[:r % len(variants)]:
            start = time.perf_counter()
            if name.startswith("keras_"):
                keras_fit(model, arrays, name.endswith("tf_data"), epochs, batch_size)
            else:
                result = run_trial(config, data[name], settings, number=0, engine="bench",
                                   build=build)
                assert result.state == "complete", (name, result.reason)
            times[name].append(time.perf_counter() - start)
    base = min(times["arrays"])
    return {name: (min(t), min(t) / base) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--keras-control", action="store_true",
                        help="also time plain Keras fit on the arrays and on tf.data")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    if not models or set(models) - {"mlp", "cnn"} or min(args.rounds, args.epochs) < 1:
        parser.exit(2, "bench_stream_time.py: --models takes mlp and cnn; --rounds and "
                       "--epochs must be >= 1\n")
    print(f"{keras.backend.backend()}: fastest of {args.rounds} rounds, {args.epochs} "
          "epochs per trial (build, fit with the monitor, evaluate)")
    print(f"{'model':<6}{'variant':<14}{'trial s':>9}{'ratio':>8}")
    for model in models:
        for name, (seconds, ratio) in bench(model, args.rounds, args.epochs, args.batch_size,
                                            args.keras_control).items():
            print(f"{model:<6}{name:<14}{seconds:>9.2f}{ratio:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
