"""The AutoML search over the cures for dying ReLU, from Python or `keras-relu search`.

    import search
    result = search.run(dataset="digits", trials=20, epochs=5,
                        space=search.default_space().with_cli(
                            choices=["activation=relu,sugar_bsilu"]))
    result.best[0].config, result.best[0].val_accuracy, result.parent_run_id
    again = search.retrain(result.best_config)    # the winner again, the same score

Nothing heavy is imported with the package: `run` brings Keras, Optuna and MLflow when
it is called.
"""

__all__ = ["SearchResult", "SearchSettings", "Space", "TrialSummary", "UsageError",
           "default_space", "retrain", "run", "run_worker"]

_LAZY = {"run": "search.api", "SearchResult": "search.result", "SearchSettings": "search.settings",
         "TrialSummary": "search.report", "Space": "search.space",
         "default_space": "search.space", "run_worker": "search.parallel.worker",
         "retrain": "search.retraining"}


class UsageError(ValueError):
    """Bad input from the user: the CLI prints it on one line and exits with status 2."""


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
