"""The one declarative search space: the cures' dimensions, their domains, overrides.

A space is an ordered tuple of dimensions (`search.dims`): `Choice`, `Float`, `Int`,
`Fixed`, each optionally active only `when` an earlier dimension takes one of some
values. Every engine translates it mechanically: Optuna's `suggest_*`, KerasTuner's
`hp.Choice/Float/Int/Fixed` with `parent_name`/`parent_values`. A config is a plain dict
of the active dimensions' values. `Space.to_dict()` writes the format a `--space` file
reads, and `Space.from_dict()` reads it back.
"""

import dataclasses

import keras_relu
from search import UsageError
from search.dims import (BOOLEAN, Choice, Fixed, Float, Int, Number, domain_of,
                         load_space_file, parse_dim, split_pair)
from search.builders import INITIALIZERS
from search.optimizers import CLIPPINGS, OPTIMIZERS, SCHEDULES

RECYCLES = ("none", "redo")  # redo: keras_relu.ReDo every `recycle_every` epochs

__all__ = ["Choice", "Fixed", "Float", "Int", "Space", "DOMAINS", "default_space", "build_space",
           "resolve_space"]

# What each dimension may take: the valid values, or a Number.
DOMAINS = {
    "activation": keras_relu.ACTIVATIONS,
    "initializer": INITIALIZERS,
    "batch_norm": BOOLEAN,
    "dropout": Number(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "clipping": CLIPPINGS,
    "clip_threshold": Number(float, lambda v: v > 0, "a number > 0"),
    "schedule": SCHEDULES,
    "warmup_fraction": Number(float, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "decay_rate": Number(float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "learning_rate": Number(float, lambda v: v > 0, "a number > 0"),
    "optimizer": OPTIMIZERS,
    "residual": BOOLEAN,
    "recycle": RECYCLES,
    "recycle_every": Number(int, lambda v: v >= 1, "an integer >= 1"),
    "momentum": Number(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "depth": Number(int, lambda v: 1 <= v <= 64, "an integer in [1, 64]"),
    "width": Number(int, lambda v: 1 <= v <= 4096, "an integer in [1, 4096]"),
}


# Control trials a new default study starts with: one deep, narrow configuration where
# ReLU units die (on digits, 12 x Dense(16), Adam at 1e-2, no batch norm), as plain ReLU
# and with each cure, so the first trials of the main job show the problem and the cures.
_CONTROL = {"activation": "relu", "initializer": "he_normal", "batch_norm": False,
            "dropout": 0.0, "clipping": "none", "schedule": "constant", "learning_rate": 1e-2,
            "optimizer": "adam", "residual": False, "recycle": "none", "depth": 12, "width": 16}
CONTROLS = {"relu": _CONTROL, "sugar_bsilu": {**_CONTROL, "activation": "sugar_bsilu"},
            "relu+residual": {**{k: v for k, v in _CONTROL.items() if k != "recycle"},
                              "residual": True},
            "relu+redo": {**_CONTROL, "recycle": "redo", "recycle_every": 1},
            "relu+rai": {**_CONTROL, "initializer": "rai"}}


def default_space(model_dims=True):
    """The space `keras-relu search` explores unless told otherwise; `model_dims=False`
    leaves out the built-in model's depth and width (for the user's own model)."""
    clipped = ("clipping", ("clipnorm", "clipvalue", "global_clipnorm"))
    return Space((
        Choice("activation", tuple(keras_relu.ACTIVATIONS)),
        Choice("initializer", INITIALIZERS),
        Choice("batch_norm", (False, True)),
        Float("dropout", 0.0, 0.5),
        Choice("clipping", CLIPPINGS),
        Float("clip_threshold", 0.1, 10.0, log=True, when=clipped),
        Choice("schedule", SCHEDULES),
        Float("warmup_fraction", 0.05, 0.3, when=("schedule", ("cosine_warmup",))),
        Float("decay_rate", 0.5, 0.99, when=("schedule", ("exponential",))),
        Float("learning_rate", 1e-4, 3e-2, log=True),
        Choice("optimizer", OPTIMIZERS),
        Float("momentum", 0.5, 0.99, when=("optimizer", ("sgd",))),
        Choice("residual", (False, True)),
        # ReDo cannot follow a unit through a skip connection (keras_relu.ReDo leaves such
        # layers out), so it is searched on models without them.
        Choice("recycle", RECYCLES, when=("residual", (False,))),
        Int("recycle_every", 1, 3, when=("recycle", ("redo",))),
        *((Int("depth", 1, 12), Int("width", 16, 128, log=True)) if model_dims else ()),
    ))


@dataclasses.dataclass(frozen=True)
class Space:
    """The search space: an ordered tuple of dimensions (`Choice`, `Int`, `Float`, `Fixed`
    of `search.dims`); a dimension's `when` condition points only to an earlier one.

    One declaration, translated to Optuna and to KerasTuner. Immutable: every method
    returns a new space.

    Example:

    ```python
    space = search.default_space().with_cli(fixes=["batch_norm=false"],
                                            choices=["activation=relu,sugar_bsilu"])
    space.possible_values("activation")     # ('relu', 'sugar_bsilu')
    search.Space.from_dict(space.to_dict()).dims == space.dims   # space.json's format
    ```
    """

    dims: tuple
    overridden: frozenset = frozenset()  # names set by a file or the command line

    def __iter__(self):
        return iter(self.dims)

    def __getitem__(self, name):
        for dim in self.dims:
            if dim.name == name:
                return dim
        raise self.unknown(name)

    def unknown(self, name, source=None):
        """The `UsageError` for a dimension `name` this space lacks: the closest valid
        name, and all of them."""
        import difflib

        close = difflib.get_close_matches(str(name), self.names, n=1)
        return UsageError(f"{source + ': ' if source else ''}unknown search dimension {name!r}"
                          f"{f' (did you mean {close[0]}?)' if close else ''}; valid: "
                          f"{', '.join(self.names)}")

    @property
    def names(self):
        """The dimensions' names, in order."""
        return tuple(dim.name for dim in self.dims)

    def possible_values(self, name):
        """The values a categorical-like dimension can take (None for a numeric range)."""
        dim = self[name]
        return (dim.value,) if isinstance(dim, Fixed) else getattr(dim, "values", None)

    def replace(self, new_dims, source):
        """A new space with some dimensions replaced (new names appended), checked for
        conditions on unknown, later or contradicting dimensions."""
        dims = tuple(new_dims.get(d.name, d) for d in self.dims)
        dims += tuple(d for name, d in new_dims.items() if name not in self.names)
        space = Space(dims, self.overridden | set(new_dims))
        for name in sorted(space.overridden, key=space.names.index):
            dim = space[name]
            if dim.when is None:
                continue
            parent = dim.when[0]
            if parent not in space.names[:space.names.index(name)]:
                raise UsageError(f"{source}: {name} depends on {parent}, which is not "
                                 "declared before it")
            parent_values = space.possible_values(parent)
            if parent_values is not None and not set(parent_values) & set(dim.when[1]):
                raise UsageError(
                    f"{source}: {name} is set but {parent} can never be "
                    f"{' or '.join(map(str, dim.when[1]))}"
                )
        return space

    def with_overrides(self, spec, source="space file", new_names=True):
        """Apply a mapping {name: value | [choices] | {value} | {choices} | {low, high, log}},
        each optionally with `when: {parent: [values]}`; a new name adds a dimension
        (`new_names=False`: is refused, as for the built-in model, which reads no other)."""
        if not isinstance(spec, dict):
            raise UsageError(f"{source}: expected a mapping of dimension names, got {type(spec).__name__}")
        new_dims = {}
        for name, value in spec.items():
            if not new_names and name not in self.names:
                raise self.unknown(name, source)
            base = self[name] if name in self.names else None
            new_dims[str(name)] = _parse_spec(str(name), base, value, source)
        return self.replace(new_dims, source)

    def with_cli(self, fixes=(), choices=()):
        """Apply `--fix k=v` and `--choices k=a,b` strings."""
        fixed = dict(split_pair(text, "--fix") for text in fixes)
        narrowed = {k: v.split(",") for k, v in (split_pair(t, "--choices") for t in choices)}
        both = sorted(set(fixed) & set(narrowed))
        if both:
            raise UsageError(f"{both[0]} is given to both --fix and --choices")
        new_dims = {name: _parse_spec(name, self[name], value, "--fix") for name, value in fixed.items()}
        new_dims.update(
            {name: _parse_spec(name, self[name], value, "--choices") for name, value in narrowed.items()}
        )
        return self.replace(new_dims, "--fix/--choices")

    def to_dict(self):
        """The space as plain data in the format of a `--space` file (`from_dict` reads it)."""
        out = {}
        for dim in self.dims:
            if isinstance(dim, Fixed):
                spec = {"value": dim.value}
            elif isinstance(dim, Choice):
                spec = {"choices": list(dim.values)}
            else:
                spec = {"low": dim.low, "high": dim.high, "log": dim.log}
                if isinstance(dim, Float) and float(dim.low).is_integer():
                    spec["type"] = "float"  # JSON would read 0.0 back as the integer 0
            if dim.when is not None:
                spec["when"] = {dim.when[0]: list(dim.when[1])}
            out[dim.name] = spec
        return out

    @classmethod
    def from_dict(cls, spec, source="space"):
        """The space `spec` declares, exactly (the inverse of `to_dict`)."""
        return cls(()).with_overrides(spec, source)

    def example(self):
        """A config of this space without search: each active dimension's fixed value,
        first choice or lower bound (to try a model builder once)."""
        config = {}
        for dim in self.dims:
            if dim.active(config):
                config[dim.name] = (dim.value if isinstance(dim, Fixed) else dim.values[0]
                                    if isinstance(dim, Choice) else dim.low)
        return config

    def contains(self, config):
        """Whether `config` is a config of this space (every active dimension can take its
        value; no other value given)."""
        seen = {}
        for dim in self.dims:
            if not dim.active(seen):
                continue
            if dim.name not in config:
                return False
            value = seen[dim.name] = config[dim.name]
            if isinstance(dim, Fixed) and value != dim.value \
                    or isinstance(dim, Choice) and value not in dim.values \
                    or isinstance(dim, (Int, Float)) and not dim.low <= value <= dim.high:
                return False
        return set(config) == set(seen)

    def without(self, names, assumed=None):
        """The space without the dimensions `names`; a dimension that depends on one of
        them is kept unconditionally where `assumed[name]` meets its condition, else
        dropped too."""
        assumed, kept = assumed or {}, []
        gone = set(names)
        for dim in self.dims:
            if dim.name in gone:
                continue
            if dim.when is not None and dim.when[0] in gone:
                if assumed.get(dim.when[0]) not in dim.when[1]:
                    gone.add(dim.name)
                    continue
                dim = dataclasses.replace(dim, when=None)
            kept.append(dim)
        return Space(tuple(kept), self.overridden - gone)

    def fixed(self, config):
        """The space in which each dimension of `config` is fixed to its value."""
        return self.with_overrides({k: {"value": v} for k, v in config.items()}, "config")


def _parse_spec(name, base, spec, source):
    return parse_dim(name, spec, base, domain_of(base, DOMAINS.get(name)), source)


def build_space(space_file=None, fixes=(), choices=()):
    """The default space, overridden by a space file, then by --fix and --choices."""
    return resolve_space(space_file, fixes, choices)


def resolve_space(space, fix, choices, model_dims=True):
    """A `Space` from a Space, a file path or a mapping (None: the default), then fix and
    choices applied."""
    if space is None:
        resolved = default_space(model_dims)
    elif isinstance(space, Space):
        resolved = space
    elif isinstance(space, dict):  # the built-in model (model_dims) reads no other names
        resolved = default_space(model_dims).with_overrides(space, "space", not model_dims)
    else:
        resolved = default_space(model_dims).with_overrides(
            load_space_file(space), f"space file {space}", not model_dims)
    return resolved.with_cli(fix, choices)
