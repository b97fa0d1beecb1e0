"""
Title: Read a search's results back through MlflowClient
Description: Every search is an MLflow parent run with a child run per trial. Find the
last search of a study, rank its trials, follow a trial's dead fraction epoch by epoch,
and fetch its pictures, with MLflow's own client.

    python examples/read_results_mlflow.py [--study digits] [--tracking-uri URI]
        [--trials 6] [--epochs 3]

Reads the store a search wrote (default: ./mlruns, as `keras-relu search` leaves it); if
the study has no runs there yet, runs a small search first. Needs the search extra.
"""

import argparse
import os

import mlflow
from mlflow import MlflowClient

import search
from search.tracking import resolve_tracking_uri

parser = argparse.ArgumentParser(description="Read a search's results back through MLflow")
parser.add_argument("--study", default="digits", help="the study (an MLflow experiment)")
parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI, else ./mlruns")
parser.add_argument("--trials", type=int, default=6, help="for the search, if one is run")
parser.add_argument("--epochs", type=int, default=3, help="for the search, if one is run")
parser.add_argument("--output", default="mlflow_results", help="folder for the pictures")
args = parser.parse_args()

"""
## The store, and a search if it has none

One MLflow experiment per study, named after it. `keras-relu search` writes to
`sqlite:///mlruns/mlflow.db` under the working directory unless told otherwise.
"""

uri = resolve_tracking_uri(args.tracking_uri)
client = MlflowClient(uri)
if client.get_experiment_by_name(args.study) is None:
    search.run(study_name=args.study, trials=args.trials, epochs=args.epochs,
               tracking_uri=uri, progress=False)
experiment = client.get_experiment_by_name(args.study)

"""
## The last search: its parent run

A parent run holds the search's settings as params, the winner as `best_*` metrics and
`best.*` params, and its tables (`trials.csv`, `best.yaml`, Optuna's plots) as artifacts.
"""

parent = client.search_runs([experiment.experiment_id],
                            filter_string="tags.mlflow.runName LIKE 'search-%'",
                            order_by=["attributes.start_time DESC"], max_results=1)[0]
print(f"search {parent.info.run_name} ({parent.info.status}): "
      f"best val_accuracy {parent.data.metrics.get('best_val_accuracy')}, "
      f"test accuracy {parent.data.metrics.get('best_test_accuracy')}")
print("its artifacts:", ", ".join(a.path for a in client.list_artifacts(parent.info.run_id)))

"""
## Its trials, ranked

Each trial is a child run: its config as params, and per epoch `val_accuracy`, `loss`,
`dead_fraction`, `dormant_fraction`, `zero_fraction` (and per layer
`dead_fraction/<layer>`). A pruned or failed trial says why in its `reason` tag.
"""

trials = client.search_runs(
    [experiment.experiment_id],
    filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    order_by=["metrics.val_accuracy DESC"])
print(f"\n{'trial':<10} {'status':<9} {'activation':<13} {'val_accuracy':>12} {'dead':>6}")
for run in trials:
    metrics, params = run.data.metrics, run.data.params
    print(f"{run.info.run_name:<10} {run.info.status:<9} {params.get('activation', '-'):<13} "
          f"{metrics.get('val_accuracy', float('nan')):>12.4f} "
          f"{metrics.get('dead_fraction', float('nan')):>6.3f}")

"""
## One trial, epoch by epoch, and its pictures

`get_metric_history` gives every logged value with its step (the epoch). Each trial logs
`dead_fraction.png` (dead units per layer over epochs) and `unit_activity.png` (every
unit by epoch); `mlflow.artifacts.download_artifacts` fetches them.
"""

best = trials[0]
history = client.get_metric_history(best.info.run_id, "dead_fraction")
print(f"\n{best.info.run_name}: dead fraction by epoch",
      [(m.step, round(m.value, 3)) for m in sorted(history, key=lambda m: m.step)])
os.makedirs(args.output, exist_ok=True)
for name in ("dead_fraction.png", "unit_activity.png"):
    path = mlflow.artifacts.download_artifacts(run_id=best.info.run_id, artifact_path=name,
                                               dst_path=args.output, tracking_uri=uri)
    print("downloaded", path)
