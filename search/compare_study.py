"""`keras-relu compare --study NAME`: is a search's winner real, or seed luck?

A search keeps the best of many noisy trials, so its winner's score is biased upward (the
winner's curse). This check trains the study's top configs and a plain-ReLU baseline of
the same model again over fresh seeds (never a trial's), on the search's own data split,
with its model, epochs and batch size, and reports mean and 95% t-interval of the
search's metric on the validation split, of the same metric on the held-out test split
(evaluated once, after training), and of the dead and dormant fractions; then, for each
top config, the 95% interval of its paired difference to the baseline (the same seeds):
beyond noise only when that interval excludes 0. Logged to MLflow like `compare`.
"""

from search import UsageError, runtime
from search.compare import OUTPUT, Comparison, train_and_report
from search.compare_stats import mean_ci

SEED_BASE = 1_000_000  # check seeds: SEED_BASE + k, far from every trial's seed + number
# The plain-ReLU baseline: the winner's config with ReLU and none of compare's cures
# (search.compare.CURES: redo, rai, residual); everything else (the model's own
# dimensions, optimizer, learning rate, ...) as the winner has it.
PLAIN_RELU = {"activation": "relu", "initializer": "he_normal", "residual": False,
              "recycle": "none"}
BASELINE = "relu-baseline"


def baseline(config):
    """The plain-ReLU version of `config` (only dimensions it has are changed)."""
    plain = {**config, **{k: v for k, v in PLAIN_RELU.items() if k in config}}
    if plain.get("recycle") != "redo":
        plain.pop("recycle_every", None)
    return plain


def check_study(study, top=3, seeds=5, epochs=None, output=OUTPUT, tracking_uri=None,
                backend=None, model=None, dataset=None, out=print):
    """Train the `top` best configs of the last search of `study` and a plain-ReLU
    baseline over `seeds` fresh seeds; print and log the table and the verdicts; returns
    the summary rows. `model` and `dataset` override the recorded ones (moved files)."""
    from search import retraining, winner

    if seeds < 2:
        raise UsageError("--seeds: a 95% interval needs at least 2 seeds")
    best = winner.find(study, tracking_uri)
    record = best.record
    if not record:
        raise UsageError(f"study {best.study_name!r}: its last search recorded no "
                         "`trained_with` (a search from before keras-relu retrain); run "
                         "one more search on it")
    keras = runtime.import_keras(retraining.choose_backend(record.get("backend"), backend))
    model, spec = retraining.inputs(record, model, None, dataset)
    trials = winner.top_trials(best, tracking_uri)[:top]
    comparison = _comparison(best, record, trials, model, spec, seeds,
                             epochs or record["epochs"], keras)
    rows, runs = train_and_report(
        comparison, output, tracking_uri, out,
        f"the top {len(comparison.variants) - 1} configs of the study and plain ReLU over "
        f"{seeds} fresh seeds (mean ± 95% CI half-width), {comparison.params['epochs']} "
        "epochs")
    searched = {f"trial-{t['number']}": t.get("value") for t in trials}
    for line in verdicts(runs, comparison, record["metric"], record.get("direction"), searched):
        out(line)
    return rows


def _comparison(best, record, trials, model, spec, seeds, epochs, keras):
    from search import sources
    from search.models import load_builder
    from search.trial import TrialSettings

    if any(str(record.get(k, "")).startswith("from Python") for k in ("loss", "metrics")):
        raise UsageError("the study's model was compiled with loss=/metrics= given from "
                         "Python; the check needs names Keras knows")
    targets = record.get("loss") is not None
    data = sources.load(spec, seed=record["seed"], targets=targets, **{
        k: record[k] for k in ("samples", "features", "classes", "batch_size", "image_size",
                               "steps_per_epoch", "num_classes") if record.get(k) is not None})
    metric = record["metric"]
    test = [f"test_{metric[4:]}"] if metric.startswith("val_") and data.has_test else []
    variants = {f"trial-{t['number']}": t["config"] for t in trials}
    variants[BASELINE] = baseline(best.config)
    settings = dict(epochs=epochs, batch_size=record["batch_size"], seed=record["seed"],
                    metric=metric, loss=record.get("loss"), metrics=record.get("metrics"))
    return Comparison(
        best.study_name, variants, seeds, data,
        load_builder(model, bool(record.get("reinitialize"))),
        lambda k: TrialSettings(trial_seed=SEED_BASE + k, **settings),
        metrics=(metric, *test, "dead_fraction", "dormant_fraction"),
        params={"study": best.study_name, "variants": list(variants), "seeds": seeds,
                "epochs": epochs, "batch_size": record["batch_size"], "metric": metric,
                "dataset": spec, "model": record.get("model"),
                "backend": keras.backend.backend()},
        tags={"study": best.study_name})


def verdicts(runs, comparison, metric, direction, searched):
    """One line per top config: its mean over the fresh seeds against what the search saw
    (`searched`: label -> value), and the 95% interval of its paired difference to the
    baseline in `metric`."""
    sign = -1 if direction == "minimize" else 1
    by_seed = {(r["variant"], r["seed"]): r[metric] for r in runs
               if r["state"] == "complete" and r[metric] is not None}
    lines = [f"Against {BASELINE} ({metric}, paired by seed; beyond noise when the 95% "
             "interval of the difference excludes 0):"]
    for variant in comparison.variants:
        if variant == BASELINE:
            continue
        pairs = [(by_seed[(variant, k)], by_seed[(BASELINE, k)]) for k in
                 range(comparison.seeds) if (variant, k) in by_seed and (BASELINE, k) in by_seed]
        mean, low, high = mean_ci([a - b for a, b in pairs])
        if comparison.variants[variant] == comparison.variants[BASELINE]:
            verdict = "it is the baseline's config"
        elif not low == low:  # NaN: fewer than two complete pairs
            verdict = "too few complete runs to tell"
        elif low > 0 or high < 0:
            verdict = "beats it beyond noise" if sign * mean > 0 else "worse beyond noise"
        else:
            verdict = "within noise"
        seen = searched.get(variant)
        own = mean_ci([a for a, _ in pairs])[0]
        lines.append(f"  {variant:<10} {own:.4f} over fresh seeds"
                     f"{'' if seen is None else f' (the search saw {seen:.4f})'}; difference "
                     f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]: {verdict}")
    return lines
