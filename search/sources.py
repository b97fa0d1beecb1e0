"""Where the search's data comes from: a data set spec, or the objects given to `search.run`.

Specs (`search.data.DATASETS`): the named and npz data sets are arrays (`search.data`),
`images:DIR` a folder streamed from disk (`search.images`), `data:MODULE:FUNCTION` what a
function returns; objects are arrays `(x, y)` or pipelines (`search.streams`).
"""

from search import UsageError
from search import data as datasets
from search.streams import StreamData, is_pipeline  # noqa: F401  (is_pipeline: for callers)


def load(spec, **options):
    """The data of `spec`; `options` as `SearchSettings.data_options()` gives them."""
    datasets.check_spec(spec)
    if spec.startswith("images:"):
        from search.images import load_images

        return load_images(spec, options.get("seed", 0), options.get("batch_size", 64),
                           options.get("image_size"))
    if spec.startswith(datasets.REFERENCE):
        return load_reference(spec[len(datasets.REFERENCE):], **{
            k: options[k] for k in ("seed", "targets", "steps_per_epoch", "num_classes")
            if k in options})
    keep = ("seed", "samples", "features", "classes", "targets")
    return datasets.load(spec, **{k: v for k, v in options.items() if k in keep})


def from_sources(data, validation_data=None, test_data=None, name=None, seed=0,
                 targets=False, steps_per_epoch=None, num_classes=None):
    """A `StreamData` when any split is a pipeline (or a function returning one), else the
    arrays' `search.data.Dataset`. Arrays and pipelines are not mixed."""
    splits = (data, validation_data, test_data)
    if not any(is_pipeline(s) for s in splits):
        return datasets.from_arrays(data, validation_data, test_data, seed=seed,
                                    targets=targets)
    mixed = [what for what, s in zip(("data", "validation_data", "test_data"), splits)
             if s is not None and not is_pipeline(s)]
    if mixed:
        raise UsageError(f"{', '.join(mixed)}: arrays next to pipelines; give every split as "
                         "a pipeline (or every split as arrays)")
    stream = StreamData(name or "pipeline", *splits, steps_per_epoch=steps_per_epoch,
                        num_classes=num_classes, targets=targets)
    if name is None:
        stream.name = f"pipeline-{stream.content_fingerprint()}"
    return stream


def load_reference(ref, seed=0, targets=False, steps_per_epoch=None, num_classes=None):
    """The data a `--data module:function` (or `file.py:function`) returns:
    `(train, validation[, test])`, each a pipeline, a function returning one, or arrays
    `(x, y)`."""
    from search.references import load_function

    function = load_function(ref, "--data")
    try:
        splits = function()
    except Exception as err:
        raise UsageError(f"--data {ref}: the function raised {type(err).__name__}: "
                         f"{err}") from None
    if not isinstance(splits, (tuple, list)) or len(splits) not in (2, 3):
        raise UsageError(f"--data {ref}: the function must return (train, validation) or "
                         f"(train, validation, test); it returned {type(splits).__name__}")
    return from_sources(*splits, name=f"data:{ref}", seed=seed, targets=targets,
                        steps_per_epoch=steps_per_epoch, num_classes=num_classes)
