"""The figures of one measurement: `NeuronStats` over all monitored units and
`LayerStats` per layer (definitions in `keras_relu.neurons`)."""

import dataclasses

import numpy as np


def _short(units, most=8):
    units = tuple(units)
    return str(units) if len(units) <= most else f"({', '.join(map(str, units[:most]))}, ...)"


@dataclasses.dataclass(frozen=True, repr=False)
class LayerStats:
    """The figures of one monitored layer (see the module docstring)."""

    name: str
    units: int
    dead_count: int
    dead_fraction: float
    dead_units: tuple
    dormant_count: int
    dormant_fraction: float
    zero_fraction: float
    scores: np.ndarray  # the tau-dormant score of each unit

    def __repr__(self):
        return (f"LayerStats({self.name!r}: {self.units} units, {self.dead_count} dead "
                f"({self.dead_fraction:.3f}) {_short(self.dead_units)}, {self.dormant_count} "
                f"dormant ({self.dormant_fraction:.3f}), zero fraction {self.zero_fraction:.3f})")


@dataclasses.dataclass(frozen=True, repr=False)
class NeuronStats:
    """Overall figures over all monitored units, and `layers` by layer name."""

    units: int
    dead_count: int
    dead_fraction: float
    dormant_fraction: float
    zero_fraction: float
    layers: dict

    def logs(self, per_layer=True):
        """The figures as flat Keras log keys (`dead_fraction/<layer>`, ...)."""
        logs = {key: getattr(self, key)
                for key in ("dead_fraction", "dormant_fraction", "zero_fraction")}
        if per_layer:
            for name, s in self.layers.items():
                for key in ("dead_fraction", "dormant_fraction", "zero_fraction"):
                    logs[f"{key}/{name}"] = getattr(s, key)
        return logs

    def __repr__(self):
        names = list(self.layers)
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} layers)" if len(names) > 6 else "")
        return (f"NeuronStats({self.units} units, {self.dead_count} dead "
                f"({self.dead_fraction:.3f}), dormant fraction {self.dormant_fraction:.3f}, "
                f"zero fraction {self.zero_fraction:.3f}; layers: {shown or 'none'})")


def figures(merged, tau):
    """`NeuronStats` from per-layer accumulations {name: [max, sum |h|, zero count,
    entries per unit]} (what `Probe.measure` gathers)."""
    stats = {}
    for name, (hmax, hsum, zeros, count) in merged.items():
        mean_abs = hsum / count
        scores = mean_abs / (mean_abs.mean() + 1e-9)
        dead, units = np.flatnonzero(hmax <= 0), len(hmax)
        dormant = int(np.sum(scores <= tau))
        stats[name] = LayerStats(name, units, len(dead), len(dead) / units,
                                 tuple(int(i) for i in dead), dormant, dormant / units,
                                 float(zeros.sum() / (count * units)), scores)
    units = sum(s.units for s in stats.values())
    if not units:
        return NeuronStats(0, 0, float("nan"), float("nan"), float("nan"), {})
    dead = sum(s.dead_count for s in stats.values())
    zeros = sum(m[2].sum() for m in merged.values())
    entries = sum(m[3] * len(m[0]) for m in merged.values())
    return NeuronStats(units, dead, dead / units,
                       sum(s.dormant_count for s in stats.values()) / units,
                       float(zeros / entries), stats)
