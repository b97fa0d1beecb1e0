"""Search dimensions and the space-file format that declares them.

Dimensions are named like KerasTuner's hyperparameters (`Choice`, `Float`, `Int`,
`Fixed`); each is optionally active only `when` an earlier dimension takes one of some
values. One entry of a space file (YAML, JSON or TOML) declares one dimension:

    activation: [relu, sugar_bsilu]          # a list: Choice (one item: Fixed)
    depth: 4                                 # a scalar: Fixed
    width: {choices: [32, 64]}               # the same, as a mapping
    dropout: {value: 0.1}
    learning_rate: {low: 1e-4, high: 1e-2, log: true}   # Float (Int if both are integers)
    momentum: {low: 0.5, high: 0.99, when: {optimizer: [sgd]}}
    units: {low: 16, high: 128, type: int}   # type: int | float forces the kind

The parsing knows no dimension by name: the valid values come in as a `domain`. A
winner's file (`search.winner`) is a space file with one more entry, `trained_with`, what
the winner ran with; a space file's reader skips it.
"""

import dataclasses
import math
import numbers
import pathlib

from search import UsageError

RECORD = "trained_with"  # in a winner's file: not a dimension


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
    test: object = lambda v: True
    description: str = ""

    def __post_init__(self):
        if not self.description:
            object.__setattr__(self, "description",
                               "an integer" if self.kind is int else "a number")


BOOLEAN = (False, True)
_WORDS = {"true": True, "on": True, "yes": True, "1": True,
          "false": False, "off": False, "no": False, "0": False}
_KEYS = {"value", "choices", "low", "high", "log", "when", "type"}


def coerce(name, value, source, domain=None):
    """`value` checked against `domain` (valid values, a `Number`, or None: any value;
    strings from the command line parsed)."""
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
    if domain == BOOLEAN:
        if isinstance(value, bool):
            return value
        if str(value).lower() in _WORDS:
            return _WORDS[str(value).lower()]
        raise UsageError(f"{source}: {name} must be true or false, got {value!r}")
    if domain is None:
        return value
    if value not in domain:
        by_text = [v for v in domain if str(v) == str(value)]
        if by_text:  # "32" from the command line for the choice 32
            return by_text[0]
        raise UsageError(f"{source}: unknown {name} {value!r}; valid: {', '.join(map(str, domain))}")
    return value


def domain_of(dim, declared=None):
    """The domain a new value for `dim` is checked against: `declared` (by name), else
    what the existing dimension implies."""
    if declared is not None:
        return declared
    if isinstance(dim, (Int, Float)):
        return Number(int if isinstance(dim, Int) else float)
    if isinstance(dim, Choice):
        return BOOLEAN if set(dim.values) <= {False, True} else dim.values
    return None


def parse_dim(name, spec, base=None, domain=None, source="space file"):
    """The dimension `name` declared by `spec` (see the module docstring); `base` is the
    dimension it replaces, if any (its kind and condition are kept unless given)."""
    where = f"{source}: {name}"
    when = base.when if base is not None else None
    kind = None
    if isinstance(spec, dict):
        unknown = set(spec) - _KEYS
        if unknown or not set(spec) - {"when", "type"}:
            raise UsageError(
                f"{where}: expected a value, a list, or a mapping with value | choices | "
                f"low, high[, log][, when][, type]; got keys {', '.join(sorted(map(str, spec)))}")
        spec = dict(spec)
        if "when" in spec:
            when = _parse_when(spec.pop("when"), where)
        kind = spec.pop("type", None)
        if kind not in (None, "int", "float"):
            raise UsageError(f"{where}: type must be int or float, got {kind!r}")
        if set(spec) == {"value"}:
            return Fixed(name, coerce(name, spec["value"], source, domain), when=when)
        if set(spec) == {"choices"}:
            spec = spec["choices"]
        elif {"low", "high"} <= set(spec) <= {"low", "high", "log"}:
            return _parse_range(name, spec, base, domain, kind, when, source)
        else:
            raise UsageError(f"{where}: give value, choices, or low and high; got keys "
                             f"{', '.join(sorted(map(str, spec)))}")
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise UsageError(f"{where}: empty list of choices")
        values = tuple(dict.fromkeys(coerce(name, v, source, domain) for v in spec))
        if len(values) == 1:
            return Fixed(name, values[0], when=when)
        return Choice(name, values, when=when)
    return Fixed(name, coerce(name, spec, source, domain), when=when)


def _parse_range(name, spec, base, domain, kind, when, source):
    where = f"{source}: {name}"
    if base is not None and not isinstance(base, (Float, Int)) and not isinstance(domain, Number):
        raise UsageError(f"{where} is categorical: give a list of choices, not low/high")
    if isinstance(base, (Float, Int)) and kind is None:
        cls = type(base)
    elif kind is not None:
        cls = Int if kind == "int" else Float
    elif isinstance(domain, Number):
        cls = Int if domain.kind is int else Float
    else:
        whole = all(isinstance(spec[k], numbers.Integral) and not isinstance(spec[k], bool)
                    for k in ("low", "high"))
        cls = Int if whole else Float
    if not isinstance(domain, Number):
        domain = Number(int if cls is Int else float)
    low, high = coerce(name, spec["low"], source, domain), coerce(name, spec["high"], source, domain)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UsageError(f"{where}: log must be true or false, got {log!r}")
    if low > high:
        raise UsageError(f"{where}: low {low} is above high {high}")
    if log and low <= 0:
        raise UsageError(f"{where}: a log range needs low > 0, got {low}")
    return cls(name, low, high, log=log, when=when)


def _parse_when(when, where):
    if not (isinstance(when, dict) and len(when) == 1):
        raise UsageError(f"{where}: when must be one {{parent: [values]}}, got {when!r}")
    (parent, values), = when.items()
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if not values:
        raise UsageError(f"{where}: when {parent}: empty list of values")
    return str(parent), values


def split_pair(text, flag):
    """`"name=value"` -> `("name", "value")`, for --fix and --choices."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise UsageError(f"{flag} expects NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


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
        raise UsageError(f"malformed space file {path}: {_syntax_error(err)}") from None
    if isinstance(spec, dict):
        spec.pop(RECORD, None)
    if spec is None or spec == {}:
        raise UsageError(f"space file {path} declares no dimension; without --space the "
                         "search explores the default space")
    return spec


def _syntax_error(err):
    """One line naming where a YAML or TOML parser stopped: `line 3, column 7: problem`."""
    mark = getattr(err, "problem_mark", None)  # yaml.MarkedYAMLError
    if mark is not None:
        problem = getattr(err, "problem", None) or getattr(err, "context", None) or "syntax error"
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    text = str(err).strip()  # tomllib: "Expected '=' after a key ... (at line 1, column 5)"
    return text.splitlines()[0] if text else type(err).__name__
