"""The winner of a search, and reading it back (`keras-relu best`).

At the end of a search the best trial's logged model is evaluated once on the held-out
test split; the parent run records the scores (`best_test_<metric>`), which run holds
the model (`best_model_run_id`, `best_model_uri`) and `best.yaml`: the best config as a
space file in which every dimension is fixed, so `--space best.yaml --trials 1`
retrains exactly it.
"""

import dataclasses
import pathlib
import tempfile

from search import UsageError

BEST_FILE = "best.yaml"
BEST_FOLDER = pathlib.Path("mlruns") / "best"  # <study>.yaml, beside the runs


@dataclasses.dataclass
class Winner:
    """The best trial of a study, as its parent run recorded it."""

    study_name: str
    number: int
    config: dict
    metrics: dict  # best_<metric>, best_test_<metric>, best_dead_fraction, ...
    run_id: str
    model_uri: str | None
    parent_run_id: str

    def load_model(self):
        """The fitted model, through MLflow's Keras flavour."""
        import mlflow

        import keras_relu  # noqa: F401  (registers the layers the model may hold)

        if not self.model_uri:
            raise UsageError(f"study {self.study_name!r}: its best trial logged no model")
        return mlflow.keras.load_model(self.model_uri)


def conclude(tracker, best, data, batch_size, loss=None, metrics=None):
    """Evaluate `best` (a `TrialSummary`) on the test split, write `best.yaml`, and record
    both on the tracker's parent run; returns (test scores, local best.yaml, model URI)."""
    import mlflow
    import yaml

    from search.tracking import mlflow_uri

    uri = best.model_uri or tracker.child_tag(best.number, "model_uri")
    scores = {}
    if uri:
        mlflow.set_tracking_uri(mlflow_uri(tracker.uri))
        model = mlflow.keras.load_model(uri)
        if not model.compiled:
            from search.optimizers import compile_model

            compile_model(model, best.config, 1, 1, loss, metrics)
        scores = model.evaluate(data.x_test, data.y_test, batch_size=batch_size, verbose=0,
                                return_dict=True)
        del model
    text = yaml.safe_dump(dict(best.config), sort_keys=False)
    path = BEST_FOLDER / f"{tracker.experiment_name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    tracker.client.log_text(tracker.parent_id, text, BEST_FILE)
    tracker.log(tracker.parent_id, metrics={f"best_test_{k}": v for k, v in scores.items()},
                tags={"best_model_uri": uri or "", "best_model_run_id": best.run_id or "",
                      "best_trial": best.number})
    return {k: float(v) for k, v in scores.items()}, path, uri


def find(study_name=None, tracking_uri=None):
    """The `Winner` of the last finished search of `study_name` (default: of any study)."""
    from mlflow import MlflowClient

    from search.secrets import mask_text
    from search.tracking import mlflow_uri, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not pathlib.Path(uri[len("sqlite:///"):]).exists():
        raise UsageError(f"no MLflow store at {mask_text(uri)}: run `keras-relu search` "
                         "first, or pass --tracking-uri")  # MLflow would make an empty one
    client = MlflowClient(mlflow_uri(uri))
    if study_name:
        experiment = client.get_experiment_by_name(study_name)
        if experiment is None:
            raise UsageError(f"no study {study_name!r} in {mask_text(uri)}")
        experiments = [experiment.experiment_id]
    else:
        experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "tags.kind = 'search' and attributes.status = "
                              "'FINISHED' and tags.best_model_run_id != ''",
                              order_by=["attributes.end_time DESC"], max_results=1)
    if not runs:
        where = f"study {study_name!r}" if study_name else "any study"
        raise UsageError(f"no finished search with a best trial for {where} in {mask_text(uri)}")
    parent = runs[0]
    import mlflow
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        got = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, tracking_uri=uri,
                                                  artifact_path=BEST_FILE, dst_path=tmp)
        config = yaml.safe_load(pathlib.Path(got).read_text())
    tags = parent.data.tags
    return Winner(tags.get("study_name", study_name), int(tags.get("best_trial", -1)),
                  config, dict(parent.data.metrics), tags["best_model_run_id"],
                  tags.get("best_model_uri") or None, parent.info.run_id)


def register(winner, name, tracking_uri=None):
    """Register the winner's model in MLflow's Model Registry as `name`; its version."""
    import mlflow

    from search.tracking import mlflow_uri

    if not winner.model_uri:
        raise UsageError(f"study {winner.study_name!r}: its best trial logged no model")
    mlflow.set_tracking_uri(mlflow_uri(tracking_uri))
    return mlflow.register_model(winner.model_uri, name).version


def export(winner, output, tracking_uri=None):
    """Copy the winner's `.keras` file and `best.yaml` into `output`; their paths."""
    import mlflow
    import yaml

    from search.tracking import mlflow_uri

    folder = pathlib.Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(mlflow_uri(tracking_uri))
    keras_file = folder / f"{winner.study_name}.keras"
    winner.load_model().save(keras_file)
    config = folder / f"{winner.study_name}.{BEST_FILE}"
    config.write_text(yaml.safe_dump(winner.config, sort_keys=False))
    return keras_file, config


def show_best(study_name=None, output=".", register_model=None, tracking_uri=None):
    """`keras-relu best`: print the winner of the last finished search of `study_name`
    (default: of any study), copy its `.keras` file and best.yaml into `output`, and
    register the model as `register_model` if given."""
    from search import runtime

    runtime.import_keras()  # quietly, before MLflow brings it
    best = find(study_name, tracking_uri)
    print(f"study {best.study_name!r}: best trial {best.number} (run {best.run_id})")
    for key, value in sorted(best.metrics.items()):
        if key.startswith("best_") and key != "best_trial":
            print(f"  {key} {value:.4g}")
    print("config: " + ", ".join(f"{k}={v}" for k, v in best.config.items()))
    print(f"model: {best.model_uri}")
    keras_file, config = export(best, output, tracking_uri)
    print(f"wrote {keras_file} and {config}")
    if register_model:
        version = register(best, register_model, tracking_uri)
        print(f"registered {register_model!r} version {version}")
