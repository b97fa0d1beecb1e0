"""The one declarative search space, its overrides (file, --fix, --choices) and its checks.

A space is an ordered tuple of dimensions named like KerasTuner's hyperparameters
(`Choice`, `Float`, `Int`, `Fixed`), each optionally active only `when` an earlier
dimension takes one of some values. Every engine translates it mechanically:
Optuna's `suggest_*`, KerasTuner's `hp.Choice/Float/Int/Fixed` in `hp.conditional_scope`.
A config is a plain dict of the active dimensions' values.
"""

import dataclasses
import math
import pathlib

import keras_relu
from search import UsageError
from search.models import CLIPPINGS, INITIALIZERS, OPTIMIZERS, SCHEDULES


@dataclasses.dataclass(frozen=True)
class Dim:
    """One dimension; `when=(parent, values)` makes it conditional on an earlier one."""

    name: str
    when: tuple | None = dataclasses.field(default=None, kw_only=True)

    def active(self, config):
        return self.when is None or config.get(self.when[0]) in self.when[1]


@dataclasses.dataclass(frozen=True)
class Choice(Dim):
    values: tuple


@dataclasses.dataclass(frozen=True)
class Float(Dim):
    low: float
    high: float
    log: bool = False


@dataclasses.dataclass(frozen=True)
class Int(Dim):
    low: int
    high: int
    log: bool = False


@dataclasses.dataclass(frozen=True)
class Fixed(Dim):
    value: object


@dataclasses.dataclass(frozen=True)
class Number:
    """The domain of a numeric dimension: its type, a validity test and its wording."""

    kind: type
    test: object
    description: str


# What each dimension may take: the valid values, or a Number.
DOMAINS = {
    "activation": keras_relu.ACTIVATIONS,
    "initializer": INITIALIZERS,
    "batch_norm": (False, True),
    "dropout": Number(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "clipping": CLIPPINGS,
    "clip_threshold": Number(float, lambda v: v > 0, "a number > 0"),
    "schedule": SCHEDULES,
    "warmup_fraction": Number(float, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "decay_rate": Number(float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "learning_rate": Number(float, lambda v: v > 0, "a number > 0"),
    "optimizer": OPTIMIZERS,
    "momentum": Number(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "depth": Number(int, lambda v: 1 <= v <= 16, "an integer in [1, 16]"),
    "width": Number(int, lambda v: 1 <= v <= 4096, "an integer in [1, 4096]"),
}


def default_space():
    """The space `keras-relu search` explores unless told otherwise."""
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
        Int("depth", 1, 3),
        Int("width", 32, 256, log=True),
    ))


@dataclasses.dataclass(frozen=True)
class Space:
    dims: tuple
    overridden: frozenset = frozenset()  # names set by a file or the command line

    def __iter__(self):
        return iter(self.dims)

    def __getitem__(self, name):
        for dim in self.dims:
            if dim.name == name:
                return dim
        raise UsageError(f"unknown search dimension {name!r}; valid: {', '.join(self.names)}")

    @property
    def names(self):
        return tuple(dim.name for dim in self.dims)

    def possible_values(self, name):
        """The values a categorical-like dimension can take (None for a numeric range)."""
        dim = self[name]
        return (dim.value,) if isinstance(dim, Fixed) else getattr(dim, "values", None)

    def replace(self, new_dims, source):
        """A new space with some dimensions replaced, checked for contradictions."""
        dims = tuple(new_dims.get(d.name, d) for d in self.dims)
        space = Space(dims, self.overridden | set(new_dims))
        for name in sorted(space.overridden, key=space.names.index):
            dim = space[name]
            if dim.when is not None:
                parent_values = space.possible_values(dim.when[0])
                if parent_values is not None and not set(parent_values) & set(dim.when[1]):
                    raise UsageError(
                        f"{source}: {name} is set but {dim.when[0]} can never be "
                        f"{' or '.join(map(str, dim.when[1]))}"
                    )
        return space

    def with_overrides(self, spec, source="space file"):
        """Apply a mapping {name: value | [choices] | {low, high, log} | {choices} | {value}}."""
        if not isinstance(spec, dict):
            raise UsageError(f"{source}: expected a mapping of dimension names, got {type(spec).__name__}")
        return self.replace({name: _parse_spec(self[name], spec[name], source) for name in spec}, source)

    def with_cli(self, fixes=(), choices=()):
        """Apply `--fix k=v` and `--choices k=a,b` strings."""
        fixed = dict(_split_pair(text, "--fix") for text in fixes)
        narrowed = {k: v.split(",") for k, v in (_split_pair(t, "--choices") for t in choices)}
        both = sorted(set(fixed) & set(narrowed))
        if both:
            raise UsageError(f"{both[0]} is given to both --fix and --choices")
        new_dims = {name: _parse_spec(self[name], value, "--fix") for name, value in fixed.items()}
        new_dims.update(
            {name: _parse_spec(self[name], value, "--choices") for name, value in narrowed.items()}
        )
        return self.replace(new_dims, "--fix/--choices")


def _split_pair(text, flag):
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise UsageError(f"{flag} expects NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def coerce(name, value, source):
    """`value` checked against the domain of dimension `name` (strings parsed)."""
    domain = DOMAINS[name]
    if isinstance(domain, Number):
        bad = UsageError(f"{source}: {name} must be {domain.description}, got {value!r}")
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number) or (domain.kind is int and not number.is_integer()):
            raise bad
        number = domain.kind(number)
        if not domain.test(number):
            raise bad
        return number
    if domain == (False, True):
        words = {"true": True, "on": True, "yes": True, "1": True,
                 "false": False, "off": False, "no": False, "0": False}
        if isinstance(value, bool):
            return value
        if str(value).lower() in words:
            return words[str(value).lower()]
        raise UsageError(f"{source}: {name} must be true or false, got {value!r}")
    if value not in domain:
        raise UsageError(f"{source}: unknown {name} {value!r}; valid: {', '.join(map(str, domain))}")
    return value


def _parse_spec(dim, spec, source):
    name, where = dim.name, f"{source}: {dim.name}"
    if isinstance(spec, dict):
        keys = set(spec)
        if keys == {"value"}:
            return Fixed(name, coerce(name, spec["value"], source), when=dim.when)
        if keys == {"choices"}:
            spec = spec["choices"]
        elif {"low", "high"} <= keys <= {"low", "high", "log"}:
            if not isinstance(dim, (Float, Int)):
                raise UsageError(f"{where} is categorical: give a list of choices, not low/high")
            low, high = coerce(name, spec["low"], source), coerce(name, spec["high"], source)
            log = spec.get("log", False)
            if not isinstance(log, bool):
                raise UsageError(f"{where}: log must be true or false, got {log!r}")
            if low > high:
                raise UsageError(f"{where}: low {low} is above high {high}")
            if log and low <= 0:
                raise UsageError(f"{where}: a log range needs low > 0, got {low}")
            return type(dim)(name, low, high, log=log, when=dim.when)
        else:
            raise UsageError(
                f"{where}: expected a value, a list, or a mapping with value | choices | "
                f"low, high[, log]; got keys {', '.join(sorted(map(str, keys)))}"
            )
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise UsageError(f"{where}: empty list of choices")
        values = tuple(dict.fromkeys(coerce(name, v, source) for v in spec))
        if len(values) == 1:
            return Fixed(name, values[0], when=dim.when)
        return Choice(name, values, when=dim.when)
    return Fixed(name, coerce(name, spec, source), when=dim.when)


def load_space_file(path):
    """The mapping in a YAML (.yaml/.yml/.json) or TOML (.toml) space file."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UsageError(f"cannot read space file {path}: {err.strerror or err}") from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib

            spec = tomllib.loads(text)
        else:
            import yaml

            spec = yaml.safe_load(text)
    except Exception as err:  # yaml.YAMLError, tomllib.TOMLDecodeError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"malformed space file {path}: {first}") from None
    if spec is None:
        spec = {}
    return spec


def build_space(space_file=None, fixes=(), choices=()):
    """The default space, overridden by a space file, then by --fix and --choices."""
    space = default_space()
    if space_file:
        space = space.with_overrides(load_space_file(space_file), f"space file {space_file}")
    return space.with_cli(fixes, choices)
