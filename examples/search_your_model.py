"""
Title: Search the cures on your own model, from Python
Description: Write a model builder, give it your own search dimension, run the search on
your arrays, and train the winner again.

    python examples/search_your_model.py [--trials 12] [--epochs 5]

Needs the search extra (`pip install -e ".[search]"`). Runs land in ./mlruns: browse them
with `keras-relu ui`, or read them back (examples/read_results_mlflow.py).
"""

import argparse

import keras
from sklearn.datasets import load_digits

import search

"""
## A model builder

The search calls `build(cures, input_shape, num_classes)` once per trial. `cures` holds the
trial's choices: `cures.dense(units)` is a block of Dense (the trial's initializer),
optional batch norm, the trial's activation, optional dropout, and a skip connection if the
trial has one. `cures.config` holds every dimension's value, yours included. Return an
uncompiled `keras.Model`: the search compiles it with the trial's optimizer, learning rate,
schedule and gradient clipping.
"""


def build(cures, input_shape, num_classes):
    units = cures.config["units"]  # our own dimension, declared in the space below
    inputs = keras.Input(input_shape)
    x = keras.layers.Dense(units)(inputs)
    for _ in range(4):
        x = cures.dense(units)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


"""
## The space and the data

A space given as a mapping overrides the default space's dimensions it names and adds the
new ones; the others (initializer, batch norm, dropout, clipping, schedule, learning rate,
optimizer, skip connections, ReDo) keep their defaults. Your arrays are used as they are;
the search cuts off 20% for validation and 20% for a held-out test split, by seed.
"""

parser = argparse.ArgumentParser(description="Search the cures on your own model")
parser.add_argument("--trials", type=int, default=12)
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()

space = {"units": {"low": 16, "high": 64, "log": True},
         "activation": ["relu", "sugar_bsilu", "leaky_relu"]}
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype("float32")

"""
## The search

Optuna's TPE with the median pruner; every trial is an MLflow child run with its dead,
dormant and zero fractions per epoch next to its accuracy.
"""

result = search.run(model=build, data=(x, y), space=space, trials=args.trials,
                    epochs=args.epochs, study_name="own-model", progress=False)
print(result.report())

"""
## The winner, again

`result.best_config` is the winner's file: every dimension fixed, plus what it ran with
(model, data fingerprint, epochs, seeds). `search.retrain` trains it again and compares
the score with the recorded one: on the same machine it comes back bit for bit.
"""

best = result.best[0]
again = search.retrain(result.best_config, model=build, data=(x, y), progress=False)
print(f"winner: trial {best.number}, {best.config}")
print(again.report().splitlines()[-1])  # Retrained study 'own-model', trial N: ... (the same)
