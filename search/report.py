"""What the user sees of a search: trial summaries, a progress bar, the table of best trials."""

import dataclasses
import math

COLUMNS = ("activation", "initializer", "batch_norm", "dropout", "clipping", "schedule",
           "learning_rate", "optimizer", "depth", "width")  # when no space is given
_STATES = {"COMPLETE": "complete", "PRUNED": "pruned"}  # anything else ended as failed


@dataclasses.dataclass(frozen=True)
class TrialSummary:
    """One ended trial, whichever engine ran it.

    `state` is "complete", "pruned" or "failed"; `config` the values of its active
    dimensions; `value` the objective metric's last value; `run_id` its MLflow child run;
    `model_uri` its logged model, if it improved on the study's best; `reason` why it
    was pruned or failed.
    """

    number: int
    state: str
    config: dict
    value: float | None = None
    val_accuracy: float | None = None
    dead_fraction: float | None = None
    run_id: str | None = None
    model_uri: str | None = None
    reason: str = ""
    control: str | None = None  # the label of a control trial (search.space.CONTROLS)

    @classmethod
    def of(cls, trial):
        """From an Optuna `FrozenTrial` or a KerasTuner `TrialRecord`."""
        attrs = trial.user_attrs
        return cls(trial.number, _STATES.get(trial.state.name, "failed"),
                   dict(attrs.get("config", {})), attrs.get("value"), attrs.get("val_accuracy"),
                   attrs.get("dead_fraction"), attrs.get("run_id"), attrs.get("model_uri"),
                   attrs.get("reason", ""), attrs.get("control"))


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
        if summary.state != "complete" and self.enabled:
            self.bar.write(f"trial {summary.number} {summary.state}: {summary.reason}".rstrip(": "))
        elif summary.value is not None:
            self.bar.set_postfix(last=f"{summary.value:.4g}", refresh=False)
        self.bar.update(1)


def _cell(config, column):
    value = config.get(column)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def searched(space):
    """The dimensions of `space` that vary (what a table of trials must show)."""
    from search.dims import Fixed

    return tuple(d.name for d in space if not isinstance(d, Fixed))


def table(trials, columns=COLUMNS, metric="val_accuracy"):
    """A fixed-width text table of `trials` (already ordered): number, the `columns` of
    their configs, the metric and the dead fraction."""
    if not trials:
        return "(no complete trial)"
    columns = [c for c in columns if any(c in t.config for t in trials)]
    head = ["trial", *columns, metric, "dead_fraction"]
    body = [[str(t.number), *(_cell(t.config, c) for c in columns),
             _cell({"v": t.value}, "v"), _cell({"v": t.dead_fraction}, "v")] for t in trials]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in (head, *body)]
    return "\n".join(line.rstrip() for line in lines)


def best_summary(best, metric):
    """Metrics and params of the best trial for the parent run (`best` ordered, best first)."""
    if not best:
        return None
    top = best[0]
    metrics = {f"best_{metric}": top.value, "best_dead_fraction": top.dead_fraction,
               "best_trial": top.number, "best_val_accuracy": top.val_accuracy}
    return {"metrics": {k: v for k, v in metrics.items() if v is not None},
            "params": top.config}


def one_per_control(trials):
    """Of the control trials among `trials` (summaries), one per label: its last attempt
    that ran to an end (complete or pruned), else its last one; in label order of
    first appearance."""
    chosen = {}
    for t in sorted((t for t in trials if t.control), key=lambda t: t.number):
        kept = chosen.get(t.control)
        if kept is None or t.state != "failed" or kept.state == "failed":
            chosen[t.control] = t
    return list(chosen.values())


def controls(trials, metric="val_accuracy"):
    """Lines on the control trials among `trials`: each cure against plain ReLU on the
    same deep, narrow model (empty when there are none)."""
    shown = one_per_control(trials)
    if not shown:
        return ""
    lines = ["Control trials (the same deep, narrow model; where ReLU units die):"]
    for t in shown:
        value = "-" if t.value is None else f"{t.value:.3f}"
        dead = "-" if t.dead_fraction is None else f"{t.dead_fraction:.3f}"
        lines.append(f"  {t.control:<14} {metric} {value:<6}  dead fraction {dead:<6}  "
                     f"trial {t.number}{'' if t.state == 'complete' else ', ' + t.state}")
    return "\n".join(lines)


def next_steps(study, best_file, tracking_uri):
    """The commands that follow a search: retrain the winner, check it against seed luck,
    export it."""
    from search.secrets import mask_text
    from search.tracking import default_tracking_uri

    where = ("" if tracking_uri == default_tracking_uri()
             else f" --tracking-uri {mask_text(tracking_uri)}")
    steps = [(f"keras-relu compare --study {study} --top 3 --seeds 5{where}",
              "does it beat ReLU beyond seed luck?"),
             (f"keras-relu best --study-name {study} --output DIR{where}",
              "its .keras file and best.yaml")]
    if best_file:
        steps.insert(0, (f"keras-relu retrain {best_file}{where}",
                         "the winner again: same data and seed, same score"))
    width = max(len(command) for command, _ in steps)
    return ["Next:"] + [f"  {command:<{width}}  # {why}" for command, why in steps]

