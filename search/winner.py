"""The winner of a search, and reading it back (`keras-relu best`).

At the end of a search the best trial's logged model is evaluated once on the held-out
test split; the parent run records the scores (`best_test_<metric>`), which run holds
the model (`best_model_run_id`, `best_model_uri`), the study's best trials
(`best_trials.json`) and `best.yaml`, the winner's file: its config, every dimension
fixed, and under `trained_with` what it ran with (model reference, data set, epochs,
batch size, metric, backend, the search's seed and the trial's own), which
`keras-relu retrain` reads. As a `--space` file only its dimensions count.
"""

import dataclasses
import json
import pathlib
import tempfile

from search import UsageError
from search.dims import RECORD

BEST_FILE = "best.yaml"
TOP_FILE = "best_trials.json"  # the study's best trials: number, config, value
BEST_FOLDER = pathlib.Path("mlruns") / "best"  # <study>.yaml, beside the runs
BUILT_IN = "built-in"  # the record's model when the search used the built-in MLP / CNN
FROM_PYTHON = "from Python"  # a value no other process can rebuild (a closure, an object)


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
    record: dict = dataclasses.field(default_factory=dict)  # best.yaml's `trained_with`

    def load_model(self):
        """The fitted model, through MLflow's Keras flavour."""
        import mlflow

        import keras_relu  # noqa: F401  (registers the layers the model may hold)
        from search.noise import quiet_downloads

        if not self.model_uri:
            raise UsageError(f"study {self.study_name!r}: its best trial logged no model")
        with quiet_downloads():
            return mlflow.keras.load_model(self.model_uri)


def conclude(tracker, best, data, settings, model, backend, top=()):
    """Evaluate `best` (a `TrialSummary`) on the test split, write the winner's file,
    and record both on the tracker's parent run with `top` (the study's best trials);
    returns (test scores, local best.yaml, model URI)."""
    import mlflow

    from search.noise import quiet_downloads
    from search.tracking import mlflow_uri

    uri = best.model_uri or tracker.child_tag(best.number, "model_uri")
    scores = {}
    if uri and data.has_test:
        mlflow.set_tracking_uri(mlflow_uri(tracker.uri))
        with quiet_downloads():
            fitted = mlflow.keras.load_model(uri)
        if not fitted.compiled:
            from search.optimizers import compile_model

            compile_model(fitted, best.config, 1, 1, settings.loss or data.default_loss,
                          settings.metrics)
        scores = fitted.evaluate(**data.evaluate_kwargs("test", settings.batch_size), verbose=0,
                                 return_dict=True)
        del fitted
    ran = _trial_params(tracker, best)
    record = trained_with(settings, tracker.experiment_name, best, data, model, backend, ran)
    text = best_file_text(best.config, record)
    path = BEST_FOLDER / f"{tracker.experiment_name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    tracker.client.log_text(tracker.parent_id, text, BEST_FILE)
    tracker.client.log_text(tracker.parent_id, json.dumps(
        [{"number": int(t.number), "config": t.config,
          "value": None if t.value is None else float(t.value)} for t in top]), TOP_FILE)
    tracker.log(tracker.parent_id, metrics={f"best_test_{k}": v for k, v in scores.items()},
                tags={"best_model_uri": uri or "", "best_model_run_id": best.run_id or "",
                      "best_trial": best.number})
    return {k: float(v) for k, v in scores.items()}, path, uri


def _trial_params(tracker, best):
    """What the best trial's own MLflow run says it ran with (its params; {} if none):
    Hyperband's rounds train for fewer epochs than the search's."""
    if not best.run_id:
        return {}
    tracker.flush()
    return dict(tracker.client.get_run(best.run_id).data.params)


def trained_with(settings, study, best, data, model, backend, ran=None):
    """The winner's record: everything a retrain needs besides the config. `model` is the
    builder's reference as the search stored it (see `model_record`)."""
    ran = ran or {}
    trial = settings.trial_settings()
    value = None if best.value is None else float(best.value)  # KerasTuner's: NumPy's
    record = {"study": study, "trial": int(best.number), "value": value,
              "metric": settings.metric, "direction": settings.chosen_direction,
              "model": model, "dataset": settings.dataset,
              "data_fingerprint": data.content_fingerprint(),
              "epochs": int(ran.get("epochs", settings.epochs)),
              "batch_size": int(ran.get("batch_size", settings.batch_size)),
              "seed": settings.seed,
              "trial_seed": int(ran.get("trial_seed", trial.seed_for(best.number))),
              "backend": backend, "engine": settings.engine}
    if settings.dataset == "synthetic":
        record.update(samples=settings.samples, features=settings.features,
                      classes=settings.classes)
    optional = {"mixed_precision": settings.mixed_precision or None,
                "reinitialize": settings.reinitialize or None,
                "image_size": list(settings.image_size) if settings.image_size else None,
                "steps_per_epoch": settings.steps_per_epoch, "num_classes": settings.num_classes,
                "prune_dead_above": settings.prune_dead_above,
                "loss": settings.loss, "metrics": settings.metrics}
    for key, value in optional.items():
        if value is not None:
            record[key] = value if _plain(value) else f"{FROM_PYTHON}: {value!r}"[:200]
    return record


def model_record(model):
    """What the record says of the model: `built-in`, the builder's reference, or
    `from Python: NAME` for a function no other process can import."""
    from search.models import reference

    if model is None:
        return BUILT_IN
    try:
        return reference(model)
    except UsageError:
        return f"{FROM_PYTHON}: {getattr(model, '__qualname__', type(model).__name__)}"


def _plain(value):
    return isinstance(value, (bool, int, float, str)) or isinstance(value, (list, tuple)) \
        and all(isinstance(v, str) for v in value)


def best_file_text(config, record):
    """The winner's file: a comment, the config (a space file), then `trained_with`."""
    import yaml

    head = (f"# The best trial ({record['trial']}) of study {record['study']!r}. As a --space "
            "file only the dimensions count;\n# `keras-relu retrain THIS_FILE` trains it "
            "again: the same config, data and seed.\n")
    return head + yaml.safe_dump({**config, RECORD: record}, sort_keys=False)


def read_best_file(path):
    """(config, record) of a winner's file; the record is {} for a plain space file."""
    import yaml

    from search.dims import load_space_file

    config = load_space_file(path)
    try:
        record = yaml.safe_load(pathlib.Path(path).read_text()).get(RECORD) or {}
    except AttributeError:  # not a mapping: load_space_file has refused it already
        record = {}
    return config, record


def find(study_name=None, tracking_uri=None):
    """The `Winner` of the last finished search of `study_name` (default: of any study)."""
    from mlflow import MlflowClient

    from search.secrets import mask_text
    from search.noise import quiet_downloads
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

    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        got = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, tracking_uri=uri,
                                                  artifact_path=BEST_FILE, dst_path=tmp)
        config = yaml.safe_load(pathlib.Path(got).read_text())
    record = config.pop(RECORD, None) or {}
    tags = parent.data.tags
    return Winner(tags.get("study_name", study_name), int(tags.get("best_trial", -1)),
                  config, dict(parent.data.metrics), tags["best_model_run_id"],
                  tags.get("best_model_uri") or None, parent.info.run_id, record)


def top_trials(winner, tracking_uri=None):
    """The study's best trials as its last search recorded them (best first): dicts of
    number, config and value."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from search.noise import quiet_downloads
    from search.tracking import mlflow_uri

    client = MlflowClient(mlflow_uri(tracking_uri))
    try:
        with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
            got = client.download_artifacts(winner.parent_run_id, TOP_FILE, tmp)
            return json.loads(pathlib.Path(got).read_text())
    except (MlflowException, OSError):  # a search from before best_trials.json: the winner
        return [{"number": winner.number, "config": winner.config,
                 "value": winner.record.get("value")}]


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

    from search.tracking import mlflow_uri

    folder = pathlib.Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(mlflow_uri(tracking_uri))
    keras_file = folder / f"{winner.study_name}.keras"
    winner.load_model().save(keras_file)
    config = folder / f"{winner.study_name}.{BEST_FILE}"
    if winner.record:
        config.write_text(best_file_text(winner.config, winner.record))
    else:  # a search from before the record: the config alone
        import yaml

        config.write_text(yaml.safe_dump(winner.config, sort_keys=False))
    return keras_file, config


def load_line(keras_file, record=None):
    """How to load an exported `.keras` file: keras_relu registers the layers it may hold
    (without the import Keras says only that the file "could not be deserialized")."""
    line = f'import keras, keras_relu; model = keras.saving.load_model("{keras_file}")'
    model = (record or {}).get("model", BUILT_IN)
    if ":" in model and not model.startswith(FROM_PYTHON):
        line += f"  (import {model.rpartition(':')[0]} first if it defines layers of its own)"
    return line


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
    print(f"load it: {load_line(keras_file, best.record)}")
    if best.record:
        print(f"retrain it: keras-relu retrain {config}")
    if register_model:
        version = register(best, register_model, tracking_uri)
        print(f"registered {register_model!r} version {version}")
