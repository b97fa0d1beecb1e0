"""Search efficiency on digits: best validation accuracy against epochs spent.

    python benchmarks/bench_search_efficiency.py [--seeds 3] [--budget 150] [--epochs 5]

Four searches per seed, each given the same budget of training epochs: random search
(Optuna's RandomSampler, no pruning), TPE, TPE with the median pruner, and KerasTuner's
Hyperband (at most --epochs per trial). Epochs are counted from each trial's MLflow run (a
pruned trial counts the epochs it ran); a search that has not spent its budget is resumed.
Reported per method: the best validation accuracy within the budget (mean over seeds), and
the epochs it needed to reach random search's final best, as a share of the epochs random
search spent on the way there and as a share of the whole budget (per seed, then the
median; "never" if it did not reach it). No control trials (`controls=False`): every
method starts from its own sampler. Target: TPE with pruning reaches it with at most 50%
of the epochs.
"""

import argparse
import os
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = {
    "random": {"sampler": "random", "pruner": "none"},
    "tpe": {"sampler": "tpe", "pruner": "none"},
    "tpe+median": {"sampler": "tpe", "pruner": "median"},
    "hyperband": {"engine": "kerastuner", "tuner": "hyperband"},
}


def curve(tracking_uri, study):
    """[(epochs spent so far, best val accuracy so far)] in the order the trials ran."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id], "tags.`mlflow.parentRunId` != ''",
                              order_by=["attributes.start_time ASC"], max_results=5000)
    points, spent, best = [], 0, 0.0
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        spent += len(history)
        if history and run.data.tags.get("state") == "complete":
            best = max(best, history[-1].value)
        points.append((spent, best))
    return points


def spend(method, seed, budget, epochs, folder):
    """Run (and resume) one search until it has spent `budget` epochs; its curve."""
    import search

    uri, study = f"sqlite:///{folder}/mlflow.db", f"{method}-{seed}"
    spent = 0
    while spent < budget:
        search.run(dataset="digits", trials=max(1, (budget - spent) // epochs), epochs=epochs,
                   seed=seed, study_name=study, tracking_uri=uri,
                   storage=None if method == "hyperband" else f"{folder}/{study}.journal",
                   progress=False, controls=False, **METHODS[method])
        spent = curve(uri, study)[-1][0]
    return [(e, b) for e, b in curve(uri, study) if e <= budget]


def reached(points, target):
    return next((e for e, b in points if b >= target), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=150, help="epochs per search")
    parser.add_argument("--epochs", type=int, default=5, help="most epochs per trial")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    results = {m: [] for m in METHODS}
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        for seed in range(args.seeds):
            for method in METHODS:
                results[method].append(spend(method, seed, args.budget, args.epochs, folder))
                print(f"seed {seed} {method}: best {results[method][-1][-1][1]:.4f} after "
                      f"{results[method][-1][-1][0]} epochs", flush=True)
    print(f"\ndigits, {args.seeds} seeds, {args.budget} epochs per search, at most "
          f"{args.epochs} per trial, {os.environ.get('KERAS_BACKEND', 'tensorflow')}")
    print(f"{'method':<12} {'best val_accuracy':>18} {'of random epochs':>17} "
          f"{'of the budget':>14}   per seed (of random epochs)")
    for method, curves in results.items():
        shares, budget_shares = [], []
        for seed, points in enumerate(curves):
            target = results["random"][seed][-1][1]
            needed, base = reached(points, target), reached(results["random"][seed], target)
            shares.append(needed / base if needed is not None else float("inf"))
            budget_shares.append(needed / args.budget if needed is not None else float("inf"))
        best = statistics.mean(p[-1][1] for p in curves)
        print(f"{method:<12} {best:>18.4f} {_share(statistics.median(shares)):>17} "
              f"{_share(statistics.median(budget_shares)):>14}   "
              + ", ".join(_share(s) for s in shares))


def _share(value):
    return "never" if value == float("inf") else f"{value:.0%}"


if __name__ == "__main__":
    main()
