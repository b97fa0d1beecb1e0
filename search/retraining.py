"""`keras-relu retrain FILE`: a search's winner trained again, exactly.

A winner's file (`mlruns/best/<study>.yaml`, or `<study>.best.yaml` from `keras-relu best`)
holds the winner's config and, under `trained_with`, what it ran with (`search.winner`).
Before anything is created the retrain checks that the model still imports, that the data
set is there and is the one the search had (by content), and that Keras runs on the
recorded backend (else it warns). Then it runs that config once, with the search's data
split and the trial's own seed, through `search.run`, in a study of its own
(`<study>-retrain-<trial>`), so it is tracked, evaluated and exported like any search.
On the same backend and machine the validation metric comes back bit for bit.
"""

import dataclasses
import sys
import warnings

from search import UsageError, runtime
from search.winner import BUILT_IN, FROM_PYTHON, read_best_file

REQUIRED = ("study", "trial", "metric", "model", "dataset", "epochs", "batch_size", "seed",
            "trial_seed")


@dataclasses.dataclass
class Retrained:
    """A retrain: the one-trial search it ran and the score the winner's file recorded."""

    result: object  # the SearchResult of the retrain's own study
    recorded: float | None
    value: float | None
    metric: str
    of: str  # "study 'digits', trial 7"

    @property
    def same(self):
        """Whether the retrained score equals the recorded one, to the last bit."""
        return self.value is not None and self.value == self.recorded

    def report(self):
        """The search's report, then the retrained metric against the recorded one."""
        if self.value is None or self.recorded is None:
            verdict = "no score to compare"
        elif self.same:
            verdict = "the same"
        else:
            verdict = (f"differs by {abs(self.value - self.recorded):.3g}: another backend "
                       "draws other random numbers, another machine may round otherwise")
        shown = "-" if self.value is None else f"{self.value:.6g}"
        recorded = "-" if self.recorded is None else f"{self.recorded:.6g}"
        return (f"{self.result.report()}\nRetrained {self.of}: {self.metric} {shown}, "
                f"recorded {recorded} ({verdict})")


def inputs(record, model=None, data=None, dataset=None):
    """(model builder or reference, dataset spec) a record asks for, with the caller's
    overrides; refuses, in one line, what cannot be rebuilt here."""
    from search.models import load_builder

    model = model or record.get("model")
    if isinstance(model, str) and model.startswith(FROM_PYTHON):
        raise UsageError(f"the winner's model ({model}) was a function no other process can "
                         "import; pass it: search.retrain(FILE, model=build)")
    model = None if model == BUILT_IN else model
    load_builder(model, bool(record.get("reinitialize")))  # it still imports (one line if not)
    spec = dataset or record.get("dataset")
    if spec and spec.startswith(("arrays-", "pipeline-")) and data is None:
        raise UsageError("the winner was trained on data given from Python; pass the same "
                         "data= (and validation_data=, test_data=) to search.retrain")
    return model, spec


def check_data(record, spec, arrays, seed):
    """Load the data as the search did and warn if its content is not the search's."""
    from search import sources

    options = {"seed": seed, "targets": record.get("loss") is not None,
               **{k: record[k] for k in ("samples", "features", "classes", "batch_size",
                                         "image_size", "steps_per_epoch", "num_classes")
                  if record.get(k) is not None}}
    if arrays[0] is not None:
        loaded = sources.from_sources(*arrays, **{k: v for k, v in options.items() if k in (
            "seed", "targets", "steps_per_epoch", "num_classes")})
    else:
        loaded = sources.load(spec, **options)
    found = loaded.content_fingerprint()
    if record.get("data_fingerprint") not in (None, found):
        warnings.warn(f"the data set {spec or 'given'} is not the one the search trained on "
                      f"(content {found}, recorded {record['data_fingerprint']}): the score "
                      "will differ", stacklevel=3)


def choose_backend(recorded, asked=None):
    """The backend to retrain on: `asked`, else Keras' if it is imported, else the
    recorded one; a warning when it is not the recorded one."""
    chosen = asked
    if chosen is None and "keras" in sys.modules:
        chosen = sys.modules["keras"].backend.backend()
    chosen = chosen or recorded
    if recorded and chosen != recorded:
        warnings.warn(f"the winner was trained on {recorded}; retrained on {chosen} it may "
                      "score otherwise", stacklevel=3)
    return chosen


def retrain(path, *, model=None, dataset=None, data=None, validation_data=None,
            test_data=None, loss=None, metrics=None, study_name=None, storage=None,
            tracking_uri=None, backend=None, progress=True):
    """Train the winner in the file at `path` again: its config, model, data, epochs,
    batch size and seeds, one trial in a study of its own; returns a `Retrained`.

    `model` and `dataset` override the recorded ones (a builder or data file that moved);
    `data=` etc. give arrays a search from Python was given; `loss` and `metrics` what it
    was compiled with, if those were Python objects. Raises UsageError before any study or
    run is created for a file without a record, a model that does not import, missing data.
    """
    from search.api import run

    config, record = read_best_file(path)
    if not record:
        raise UsageError(f"{path} holds no `trained_with` record: it is a space file, not a "
                         "winner's file (mlruns/best/<study>.yaml, keras-relu best --output)")
    missing = [key for key in REQUIRED if record.get(key) is None]
    if missing:
        raise UsageError(f"{path}: trained_with lacks {', '.join(missing)}")
    for name, given in (("loss", loss), ("metrics", metrics)):
        if str(record.get(name, "")).startswith(FROM_PYTHON) and given is None:
            raise UsageError(f"the winner was compiled with {name}= given from Python; "
                             f"pass it: search.retrain(FILE, {name}=...)")
    chosen = choose_backend(record.get("backend"), backend)
    runtime.import_keras(chosen)  # before a builder module imports Keras
    model, spec = inputs(record, model, data, dataset)
    check_data(record, spec, (data, validation_data, test_data), record["seed"])
    given = {k: record[k] for k in ("prune_dead_above", "mixed_precision", "samples",
                                    "features", "classes", "reinitialize", "image_size",
                                    "steps_per_epoch", "num_classes")
             if record.get(k) is not None}
    result = run(spec or "digits", data=data, validation_data=validation_data,
                 test_data=test_data, model=model, space=config, metric=record["metric"],
                 direction=record.get("direction"), loss=loss or record.get("loss"),
                 metrics=metrics or record.get("metrics"), controls=False, pruner="none",
                 trials=1, epochs=record["epochs"], batch_size=record["batch_size"],
                 seed=record["seed"], trial_seed=record["trial_seed"],
                 study_name=study_name or f"{record['study']}-retrain-{record['trial']}",
                 storage=storage, tracking_uri=tracking_uri, backend=chosen,
                 progress=progress, **given)
    of = f"study {record['study']!r}, trial {record['trial']}"
    _tag(result, of, record.get("value"))
    ran = result.trials[-1] if result.trials else None
    return Retrained(result, record.get("value"), ran.value if ran else None,
                     record["metric"], of)


def _tag(result, of, recorded):
    """Say on the retrain's parent run what it retrained and the score recorded then."""
    from mlflow import MlflowClient

    from search.tracking import mlflow_uri

    client = MlflowClient(mlflow_uri(result.tracking_uri))
    client.set_tag(result.parent_run_id, "retrain_of", of)
    if recorded is not None:
        client.set_tag(result.parent_run_id, "recorded_value", repr(recorded))
