"""What the user sees of a search: trial summaries, a progress bar, the table of best trials."""

import dataclasses
import math

COLUMNS = ("trial", "activation", "initializer", "batch_norm", "dropout", "clipping",
           "schedule", "val_accuracy", "dead_fraction")
_STATES = {"COMPLETE": "complete", "PRUNED": "pruned"}  # anything else ended as failed


@dataclasses.dataclass(frozen=True)
class TrialSummary:
    """One ended trial, whichever engine ran it.

    `state` is "complete", "pruned" or "failed"; `config` the values of its active
    dimensions; `run_id` its MLflow child run; `reason` why it was pruned or failed.
    """

    number: int
    state: str
    config: dict
    val_accuracy: float | None = None
    dead_fraction: float | None = None
    run_id: str | None = None
    reason: str = ""

    @classmethod
    def of(cls, trial):
        """From an Optuna `FrozenTrial` or a KerasTuner `TrialRecord`."""
        attrs = trial.user_attrs
        return cls(trial.number, _STATES.get(trial.state.name, "failed"),
                   dict(attrs.get("config", {})), attrs.get("val_accuracy"),
                   attrs.get("dead_fraction"), attrs.get("run_id"), attrs.get("reason", ""))


class Progress:
    """A bar over trials (terminal or notebook, `tqdm.auto`); `on_trial(summary)` after each
    trial. Disabled, it shows nothing."""

    def __init__(self, total, enabled=True):
        self.total, self.enabled, self.bar = total, enabled, None

    def __enter__(self):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, unit="trial", desc="search", dynamic_ncols=True,
                        disable=not self.enabled)
        return self

    def __exit__(self, *exc):
        self.bar.close()

    def on_trial(self, summary):
        if summary.state != "complete":
            self.bar.write(f"trial {summary.number} {summary.state}: {summary.reason}".rstrip(": "))
        elif summary.val_accuracy is not None:
            self.bar.set_postfix(last=f"{summary.val_accuracy:.3f}", refresh=False)
        self.bar.update(1)


def _cell(config, column):
    value = config.get(column)
    if column == "clipping" and value not in (None, "none"):
        return f"{value}={config.get('clip_threshold', 0):.3g}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return "-" if value is None else str(value)


def rows(trials):
    """One row per trial summary: its config plus number, val accuracy and dead fraction."""
    return [[str(t.number)] + [_cell({**t.config, "val_accuracy": t.val_accuracy,
                                      "dead_fraction": t.dead_fraction}, c)
                               for c in COLUMNS[1:]]
            for t in trials]


def table(trials):
    """A fixed-width text table of `trials` (already ordered)."""
    body = rows(trials)
    if not body:
        return "(no complete trial)"
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in body]
    return "\n".join(line.rstrip() for line in lines)


def best_summary(trials, objective):
    """Metrics and params of the best trial (by accuracy) for the parent run."""
    if not trials:
        return None
    best = max(trials, key=lambda t: t.val_accuracy or 0.0)
    metrics = {"best_val_accuracy": best.val_accuracy,
               "best_dead_fraction": best.dead_fraction, "best_trial": best.number}
    if objective == "pareto":
        metrics["pareto_front_size"] = len(trials)
    return {"metrics": {k: v for k, v in metrics.items() if v is not None},
            "params": best.config}
