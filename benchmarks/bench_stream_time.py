"""A search trial fed by a pipeline against the same trial fed by arrays, side by side.

    KERAS_BACKEND=tensorflow python benchmarks/bench_stream_time.py [--rounds 5] [--epochs 3]
        [--models mlp,cnn]

The same arrays go in as they are (`search.data.Dataset`), as a `keras.utils.PyDataset`
slicing them, and as a `tf.data` pipeline over them (shuffled, batched, prefetched); a
second arrays row is the control. Each round runs one trial of every variant through the
shared trial runner (`search.trial.run_trial`: build, compile, fit with the dead-neuron
monitor, evaluate), in rotated order; the fastest round of each is compared with the
fastest arrays round. Models: the built-in MLP on digits (1,150 x 64), and a small CNN
factory on 2,000 random 32x32x3 images. Target: a pipeline trial at most 1.1x.
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
from search.finished import FinishedModel  # noqa: E402
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
    """(arrays Dataset, builder) of a workload."""
    if model == "mlp":
        from search.builders import build_default

        return datasets.load("digits"), build_default
    rng = np.random.default_rng(0)
    x = rng.random((2000, 32, 32, 3)).astype("float32")
    y = (x[:, :16].mean(axis=(1, 2, 3)) > x[:, 16:].mean(axis=(1, 2, 3))).astype("int32")
    return datasets.from_arrays((x, y)), FinishedModel(small_cnn, "factory")


def bench(model, rounds, epochs, batch_size):
    arrays, build = workload(model)
    data = {name: variant(name, arrays, batch_size) for name in VARIANTS}
    settings = TrialSettings(epochs=epochs, batch_size=batch_size)
    times = {name: [] for name in VARIANTS}
    run_trial(CONFIG, arrays, settings, number=0, engine="bench", build=build)  # warm-up
    for r in range(rounds):
        for name in VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]:
            start = time.perf_counter()
            result = run_trial(CONFIG, data[name], settings, number=0, engine="bench",
                               build=build)
            times[name].append(time.perf_counter() - start)
            assert result.state == "complete", (name, result.reason)
    base = min(times["arrays"])
    return {name: (min(t), min(t) / base) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", default="mlp,cnn")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    if not models or set(models) - {"mlp", "cnn"} or min(args.rounds, args.epochs) < 1:
        parser.exit(2, "bench_stream_time.py: --models takes mlp and cnn; --rounds and "
                       "--epochs must be >= 1\n")
    print(f"{keras.backend.backend()}: fastest of {args.rounds} rounds, {args.epochs} "
          "epochs per trial (build, fit with the monitor, evaluate)")
    print(f"{'model':<6}{'variant':<14}{'trial s':>9}{'ratio':>8}")
    for model in models:
        for name, (seconds, ratio) in bench(model, args.rounds, args.epochs,
                                            args.batch_size).items():
            print(f"{model:<6}{name:<14}{seconds:>9.2f}{ratio:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
