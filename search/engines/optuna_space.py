"""The search space in Optuna's terms: distributions and `suggest_*` calls, and the
samplers and pruners a search can choose."""

import optuna

from search import UsageError
from search.names import PRUNERS, SAMPLERS
from search.space import Choice, Fixed, Float, Int


def distributions(space):
    """Optuna distributions of the searched dimensions (fixed ones are not suggested)."""
    dists = {}
    for dim in space:
        if isinstance(dim, Choice):
            dists[dim.name] = optuna.distributions.CategoricalDistribution(dim.values)
        elif isinstance(dim, Float):
            dists[dim.name] = optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.log)
        elif isinstance(dim, Int):
            dists[dim.name] = optuna.distributions.IntDistribution(dim.low, dim.high, log=dim.log)
    return dists


def suggest(trial, space):
    """A config for `trial`: each active dimension in declaration order."""
    config = {}
    for dim in space:
        if not dim.active(config):
            continue
        if isinstance(dim, Fixed):
            config[dim.name] = dim.value
        elif isinstance(dim, Choice):
            config[dim.name] = trial.suggest_categorical(dim.name, dim.values)
        elif isinstance(dim, Float):
            config[dim.name] = trial.suggest_float(dim.name, dim.low, dim.high, log=dim.log)
        else:
            config[dim.name] = trial.suggest_int(dim.name, dim.low, dim.high, log=dim.log)
    return config


def make_pruner(name, epochs):
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"unknown pruner {name!r}; valid: {', '.join(PRUNERS)}")


def make_sampler(name, seed):
    """Optuna's TPE (multivariate, constant liar), random or Gaussian-process sampler."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise UsageError("--sampler gp needs PyTorch: pip install 'keras-relu[torch]'")
        return optuna.samplers.GPSampler(seed=seed)
    raise UsageError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
