"""Engine + MLflow overhead per trial, against a bare `model.fit` of the same config.

    KERAS_BACKEND=jax python benchmarks/bench_search_overhead.py [--reps 5] [--epochs 5]

Side by side, alternating, in one process: (a) build + fit, (b) build + fit with the
dead-neuron monitor (what every trial measures), (c) one Optuna trial through the
shared trial runner with MLflow tracking (SQLite) and pruning. The fastest repetition
of each is compared, because TensorFlow on a busy 2-core CPU flips between a fast and
a ~2x slower mode. Target: (c) at most 5% above (b).
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIG = {"activation": "relu", "initializer": "he_normal", "batch_norm": False,
          "dropout": 0.1, "clipping": "none", "schedule": "constant",
          "learning_rate": 3e-3, "optimizer": "adam", "depth": 2, "width": 64}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import keras
    import optuna

    import keras_relu
    from search import data as datasets
    from search.engines import optuna as engine
    from search.builders import Cures, build_default
    from search.optimizers import compile_model
    from search.space import default_space
    from search.tracking import Tracker
    from search.trial import TrialSettings

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    data = datasets.load("digits")
    settings = TrialSettings(epochs=args.epochs, batch_size=args.batch_size)
    steps = -(-len(data.x_train) // args.batch_size)
    space = default_space().with_cli([f"{k}={v}" for k, v in CONFIG.items()])
    workdir = tempfile.mkdtemp(prefix="bench_search_")
    study = engine.open_study("bench", engine.open_storage(f"{workdir}/journal.log"),
                              "accuracy", space, "digits", pruner=engine.make_pruner("median", 1))
    tracker = Tracker(f"sqlite:///{workdir}/mlflow.db", "bench")
    tracker.start_parent({"engine": "optuna"}, {"kind": "benchmark"})

    def fit(with_monitor):
        keras.utils.set_random_seed(0)
        model = compile_model(build_default(Cures(CONFIG), data.input_shape, data.num_classes),
                              CONFIG, steps, args.epochs)
        callbacks = [keras_relu.DeadNeuronMonitor(
            probe=data.x_val, every=1, tau=settings.tau, max_samples=settings.probe_size,
            seed=settings.seed)] if with_monitor else []
        model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                  epochs=args.epochs, batch_size=args.batch_size, verbose=0, callbacks=callbacks)

    variants = {
        "bare fit": lambda: fit(False),
        "fit + monitor": lambda: fit(True),
        "optuna + mlflow trial": lambda: engine.optimize(study, space, data, settings, tracker, 1),
    }
    for run in variants.values():  # warm-up: imports, first compilations, DB schema
        run()
        keras.utils.clear_session(free_memory=True)
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    for _ in range(args.reps):
        for name, run in variants.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            keras.utils.clear_session(free_memory=True)
    tracker.finish_parent("FINISHED")

    print(f"backend {keras.backend.backend()}, digits, {args.epochs} epochs, batch "
          f"{args.batch_size}, fastest of {args.reps} alternating repetitions")
    print(f"{'variant':<24}{'wall s':>8}{'vs fit+monitor':>16}{'CPU s':>8}{'vs fit+monitor':>16}")
    best_wall = {name: min(values) for name, values in wall.items()}
    best_cpu = {name: min(values) for name, values in cpu.items()}
    for name in variants:
        print(f"{name:<24}{best_wall[name]:>8.3f}"
              f"{best_wall[name] / best_wall['fit + monitor'] - 1:>+16.1%}"
              f"{best_cpu[name]:>8.3f}{best_cpu[name] / best_cpu['fit + monitor'] - 1:>+16.1%}")
    over = best_wall["optuna + mlflow trial"] - best_wall["fit + monitor"]
    print(f"engine + MLflow overhead per trial: {over * 1000:.0f} ms wall "
          f"({over / best_wall['fit + monitor']:+.1%}; target <= +5%)")


if __name__ == "__main__":
    main()
