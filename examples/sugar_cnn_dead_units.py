"""
Title: SugarReLU on a CNN, with dead units tracked
Description: Train the same small CNN with ReLU and with SugarReLU, watch its dead units
epoch by epoch, and draw where they are.

    python examples/sugar_cnn_dead_units.py [--epochs 15] [--output sugar_cnn]

Runs on TensorFlow, JAX or PyTorch (set KERAS_BACKEND). Needs scikit-learn (the bundled
digits data set) and matplotlib (the pictures): `pip install -e ".[search]"`.
"""

import argparse
import os

import keras
from sklearn.datasets import load_digits

import keras_relu

"""
## The data: 8x8 digits as images

scikit-learn ships the digits data set, so nothing is downloaded. Scaled to [0, 1] and
shaped as one-channel images.
"""

parser = argparse.ArgumentParser(description="SugarReLU on a CNN, with dead units tracked")
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--output", default="sugar_cnn", help="folder for the pictures")
args = parser.parse_args()
os.makedirs(args.output, exist_ok=True)

x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)
x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]

"""
## The model: one function, the activation as an argument

A CNN where ReLU units die: four convolutions, a high learning rate. `keras_relu.
activation_layer(name)` gives a fresh layer for any name in `keras_relu.ACTIVATIONS`:
`"relu"` is Keras' own, `"sugar_bsilu"` is `SugarReLU("bsilu")`: ReLU in the forward
pass, B-SiLU's derivative in the backward pass, so a dead unit still gets gradient.
"""


def make_cnn(activation):
    keras.utils.set_random_seed(0)  # the same initial weights for both
    inputs = keras.Input((8, 8, 1))
    h = inputs
    for filters in (16, 16, 32, 32):
        h = keras.layers.Conv2D(filters, 3, padding="same")(h)
        h = keras_relu.activation_layer(activation)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


"""
## Training with the monitor

`DeadNeuronMonitor` measures every epoch on a fixed probe set (drawn once from what you
pass) and adds `dead_fraction`, `dormant_fraction`, `zero_fraction` and `revived` to the
epoch's logs, so `History`, `CSVLogger` or MLflow see them. A channel of a convolution is
dead when it is <= 0 at every position of every probe image.
"""

results = {}
for activation in ("relu", "sugar_bsilu"):
    model = make_cnn(activation)
    monitor = keras_relu.DeadNeuronMonitor(probe=x_train, per_layer=True)
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=64,
                        validation_data=(x_test, y_test), callbacks=[monitor], verbose=0)
    results[activation] = (history.history, monitor)
    keras_relu.plot_neuron_history(monitor, os.path.join(args.output, f"{activation}_dead.png"))
    keras_relu.plot_unit_activity(monitor, os.path.join(args.output, f"{activation}_units.png"))

"""
## What it shows

The dead fraction at initialisation (`monitor.initial`), after training, and the
accuracy. The pictures are in the output folder: the dead fraction per layer over epochs,
and every unit's activity by epoch (dead units crossed).
"""

print(f"{'activation':<12} {'dead at init':>12} {'dead at end':>12} {'val_accuracy':>12}")
for activation, (history, monitor) in results.items():
    print(f"{activation:<12} {monitor.initial.dead_fraction:>12.3f} "
          f"{history['dead_fraction'][-1]:>12.3f} {history['val_accuracy'][-1]:>12.3f}")
worst = max(monitor.last.layers.values(), key=lambda layer: layer.dead_fraction)
print(f"sugar_bsilu's most dead layer: {worst.name}, dead units {list(worst.dead_units)}")
print(f"pictures in {args.output}/: " + ", ".join(sorted(os.listdir(args.output))))
