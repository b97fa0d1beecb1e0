"""Revive a trained ReLU model: fine-tune it as ReLU, or swapped to SUGAR, from the same weights.

    KERAS_BACKEND=tensorflow python benchmarks/bench_revive.py [--seeds 5] [--pretrain 20]
        [--finetune 10] [--activations relu,sugar_bsilu] [--learning-rate 1e-3]

Per seed: train a ReLU MLP of `compare`'s `digits-deep-narrow` scenario (20 x Dense(16),
He normal, Adam at 1e-2, batch 64), where units die; then fine-tune copies of that trained
model (`keras_relu.replace_activations`, every weight copied) for `--finetune` epochs,
one per activation, each from the same weights with the same seed, a fresh Adam at
`--learning-rate` and the dead-neuron monitor on. Prints dead and dormant fraction (on
the validation probe) and test accuracy, mean ± 95% t-interval over seeds, side by side.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from search.runtime import import_keras  # noqa: E402

keras = import_keras()  # quietly

import keras_relu  # noqa: E402
from search import scenarios  # noqa: E402
from search.builders import Cures, build_default  # noqa: E402
from search.compare_stats import summarise, table  # noqa: E402
from search.optimizers import compile_model  # noqa: E402

TRAINED = "trained relu (before)"


def measure(model, data, variant, monitor):
    """The row `compare_stats.summarise` reads: test accuracy and the monitor's last figures."""
    accuracy = model.evaluate(data.x_test, data.y_test, verbose=0, return_dict=True)["accuracy"]
    last = monitor.last
    return {"variant": variant, "state": "complete", "test_accuracy": float(accuracy),
            "dead_fraction": last.dead_fraction, "dormant_fraction": last.dormant_fraction}


def fit(model, data, scenario, epochs, seed):
    monitor = keras_relu.DeadNeuronMonitor(probe=data.x_val, seed=seed)
    keras.utils.set_random_seed(seed)
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=scenario.batch_size,
              validation_data=(data.x_val, data.y_val), callbacks=[monitor], verbose=0)
    return monitor


def one_seed(seed, args, scenario, data):
    keras.utils.set_random_seed(seed)
    config = {**scenario.config, "activation": "relu"}
    model = build_default(Cures(config), data.input_shape, data.num_classes)
    steps = -(-len(data.x_train) // scenario.batch_size)
    compile_model(model, config, steps, args.pretrain)
    rows = [measure(model, data, TRAINED, fit(model, data, scenario, args.pretrain, seed))]
    tuning = {**config, "learning_rate": args.learning_rate}
    for activation in args.activations:
        copy = keras_relu.replace_activations(model, activation)
        compile_model(copy, tuning, steps, args.finetune)
        monitor = fit(copy, data, scenario, args.finetune, seed + 1000)
        rows.append(measure(copy, data, f"fine-tuned as {activation}", monitor))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--pretrain", type=int, default=20, help="ReLU epochs (default 20)")
    parser.add_argument("--finetune", type=int, default=10, help="epochs (default 10)")
    parser.add_argument("--activations", default="relu,sugar_bsilu")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--scenario", default="digits-deep-narrow")
    args = parser.parse_args()
    args.activations = [a for a in args.activations.split(",") if a]
    unknown = [a for a in args.activations if a not in keras_relu.ACTIVATIONS]
    if unknown or args.scenario not in scenarios.SCENARIOS or \
            not scenarios.SCENARIOS[args.scenario].name.startswith("digits"):
        parser.exit(2, f"bench_revive.py: --activations from {', '.join(keras_relu.ACTIVATIONS)}; "
                       "--scenario a digits scenario\n")
    if min(args.seeds, args.pretrain, args.finetune) < 1 or not args.learning_rate > 0:
        parser.exit(2, "bench_revive.py: --seeds, --pretrain, --finetune and --learning-rate "
                       "must be positive\n")
    scenario = scenarios.SCENARIOS[args.scenario]
    data, _, _ = scenarios.load(scenario)
    runs = [row for seed in range(args.seeds) for row in one_seed(seed, args, scenario, data)]
    variants = [TRAINED] + [f"fine-tuned as {a}" for a in args.activations]
    print(f"{keras.backend.backend()}, {args.scenario}: {args.pretrain} ReLU epochs (Adam "
          f"{scenario.config['learning_rate']:g}), then {args.finetune} epochs (Adam "
          f"{args.learning_rate:g}) from the same weights; {args.seeds} seeds, mean ± 95% CI")
    print(table(summarise(runs, variants)))


if __name__ == "__main__":
    main()
