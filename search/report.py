"""What the user sees: a progress bar over trials and the table of best trials."""

import math

COLUMNS = ("trial", "activation", "initializer", "batch_norm", "dropout", "clipping",
           "schedule", "val_accuracy", "dead_fraction")


class Progress:
    """A tqdm bar over trials; `on_trial` is an Optuna study callback."""

    def __init__(self, total):
        self.total, self.bar = total, None

    def __enter__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, unit="trial", desc="search", dynamic_ncols=True)
        return self

    def __exit__(self, *exc):
        self.bar.close()

    def on_trial(self, study, trial):
        state = {"FAIL": "failed", "PRUNED": "pruned"}.get(trial.state.name, trial.state.name.lower())
        if state != "complete":
            reason = trial.user_attrs.get("reason", "")
            self.bar.write(f"trial {trial.number} {state}: {reason}".rstrip(": "))
        accuracy = trial.user_attrs.get("val_accuracy")
        if accuracy is not None:
            self.bar.set_postfix(last=f"{accuracy:.3f}", refresh=False)
        self.bar.update(1)


def _cell(config, column):
    value = config.get(column)
    if column == "clipping" and value not in (None, "none"):
        return f"{value}={config.get('clip_threshold', 0):.3g}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return "-" if value is None else str(value)


def rows(trials):
    """One row per trial: its config plus number, val accuracy and dead fraction."""
    return [
        [str(t.number)] + [_cell({**t.user_attrs.get("config", {}), **t.user_attrs}, c)
                           for c in COLUMNS[1:]]
        for t in trials
    ]


def table(trials, multi=False):
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
    best = max(trials, key=lambda t: t.user_attrs.get("val_accuracy") or 0.0)
    metrics = {"best_val_accuracy": best.user_attrs.get("val_accuracy"),
               "best_dead_fraction": best.user_attrs.get("dead_fraction"),
               "best_trial": best.number}
    if objective == "pareto":
        metrics["pareto_front_size"] = len(trials)
    return {"metrics": {k: v for k, v in metrics.items() if v is not None},
            "params": best.user_attrs.get("config", {})}
