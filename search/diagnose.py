"""`keras-relu inspect`: does a saved model have dead ReLUs, and where?

Loads a `.keras` file, measures it with `keras_relu.neuron_stats` on samples of a data
set (the search's data specs), prints dead, dormant and zero fractions per layer and the
dead units of the worst layers, writes the unit-activity heatmap and the figures as JSON,
and, given a tracking URI, logs all of it as an MLflow run.
"""

import json
import pathlib

from search import UsageError

SPLITS = ("train", "val", "test")
EXPERIMENT = "inspect"


def probe_samples(data, split, samples, seed):
    """At most `samples` inputs of `split`: of arrays drawn once with `seed` (all if
    fewer), of a pipeline its first."""
    from keras_relu.neurons import draw_probe
    from search.streams import batches

    if hasattr(data, "open"):  # a pipeline: never read whole
        return batches(data.open(split), samples)[0]
    return draw_probe(getattr(data, f"x_{split}"), max_samples=samples, seed=seed)


def check_fits(model, x, path):
    """UsageError unless the samples `x` fit `model`'s input."""
    expected = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    got = tuple(x.shape[1:])
    if expected is None or len(expected) != len(got) or any(
            e is not None and e != g for e, g in zip(expected, got)):
        shown = expected if expected is not None else [tuple(t.shape[1:]) for t in model.inputs]
        raise UsageError(f"the data does not fit {path}: samples of shape {got}, the model "
                         f"takes {shown}")


def as_dict(stats):
    """`NeuronStats` as plain JSON data (every layer, its dead unit indices)."""
    return {"units": stats.units, "dead_fraction": stats.dead_fraction,
            "dormant_fraction": stats.dormant_fraction, "zero_fraction": stats.zero_fraction,
            "layers": {name: {"units": s.units, "dead_fraction": s.dead_fraction,
                              "dormant_fraction": s.dormant_fraction,
                              "zero_fraction": s.zero_fraction, "dead_units": list(s.dead_units)}
                       for name, s in stats.layers.items()}}


def table(stats, worst=3, most_units=20):
    """The lines `keras-relu inspect` prints."""
    width = max([len(n) for n in stats.layers] + [5])
    lines = [f"{'layer':<{width}}  units   dead  dead_fraction  dormant_fraction  zero_fraction"]
    for name, s in stats.layers.items():
        lines.append(f"{name:<{width}}  {s.units:>5}  {s.dead_count:>5}  {s.dead_fraction:>13.3f}"
                     f"  {s.dormant_fraction:>16.3f}  {s.zero_fraction:>13.3f}")
    lines.append(f"{'all':<{width}}  {stats.units:>5}  {stats.dead_count:>5}  "
                 f"{stats.dead_fraction:>13.3f}  {stats.dormant_fraction:>16.3f}  "
                 f"{stats.zero_fraction:>13.3f}")
    ranked = sorted((s for s in stats.layers.values() if s.dead_count),
                    key=lambda s: (-s.dead_fraction, s.name))[:worst]
    for s in ranked:
        shown = ", ".join(map(str, s.dead_units[:most_units]))
        more = f", ... ({s.dead_count} in all)" if s.dead_count > most_units else ""
        lines.append(f"dead units of {s.name}: {shown}{more}")
    if not ranked:
        lines.append("no dead units")
    return lines


def run_inspect(model, dataset="digits", split="train", samples=2048, seed=0, worst=3,
                output="mlruns/inspect", tracking_uri=None):
    """Measure the saved `model` on `dataset`; print, write and (with `tracking_uri`) log
    the figures. Returns the `keras_relu.stats.NeuronStats`."""
    from search import data as datasets
    from search import sources
    from search.finished import read_keras_file

    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    datasets.check_spec(dataset)
    loaded = read_keras_file(model)
    x = probe_samples(sources.load(dataset, seed=seed), split, samples, seed)
    check_fits(loaded, x, model)
    import keras_relu

    stats = keras_relu.neuron_stats(loaded, x)
    print(f"{model}: {len(x)} samples of {dataset} ({split}), {len(stats.layers)} monitored layers")
    print("\n".join(table(stats, worst)))
    folder = pathlib.Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "neuron_stats.json"]
    paths[0].write_text(json.dumps(as_dict(stats), indent=1))
    if stats.layers:
        paths.append(keras_relu.plot_unit_activity(
            stats, folder / "unit_activity.png", title=f"Unit activity: {pathlib.Path(model).name}"))
    print("wrote " + " and ".join(map(str, paths)))
    if tracking_uri:
        run_id = _log(stats, paths, tracking_uri, {"model": str(pathlib.Path(model).resolve()),
                                                   "dataset": dataset, "split": split,
                                                   "samples": len(x), "seed": seed})
        print(f"MLflow run {run_id} (experiment {EXPERIMENT!r})")
    return stats


def _log(stats, paths, tracking_uri, params):
    from search.tracking import Tracker

    tracker = Tracker(tracking_uri, EXPERIMENT)
    run_id = tracker.start_parent(params, tags={"kind": "inspect"},
                                  name=f"inspect-{pathlib.Path(params['model']).stem}")
    tracker.log(run_id, metrics={**stats.logs(per_layer=True), "dead_count": stats.dead_count,
                                 "units": stats.units})
    for path in paths:
        tracker.client.log_artifact(run_id, str(path))
    tracker.client.set_terminated(run_id, "FINISHED")
    return run_id
