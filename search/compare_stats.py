"""The statistics and outputs of `keras-relu compare`: mean and 95% Student-t interval
per variant, a fixed-width table, CSV files and a bar plot."""

import math

import numpy as np

METRICS = ("test_accuracy", "dead_fraction", "dormant_fraction")


def mean_ci(values, level=0.95):
    """(mean, lower, upper) of `values` with a Student-t interval; NaN bounds if n < 2."""
    from scipy import stats

    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1)
                 / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def summarise(runs, variants, metrics=METRICS):
    """One row per variant: n and mean/CI of each metric over its complete runs."""
    rows = []
    for variant in variants:
        done = [r for r in runs if r["variant"] == variant and r["state"] == "complete"]
        row = {"variant": variant, "n": len(done)}
        for key in metrics:
            mean, low, high = mean_ci([r[key] for r in done])
            row.update({f"{key}_mean": mean, f"{key}_ci_low": low, f"{key}_ci_high": high})
        rows.append(row)
    return rows


def _fmt(row, key):
    mean, low = row[f"{key}_mean"], row[f"{key}_ci_low"]
    if math.isnan(mean):
        return "-"
    return f"{mean:.3f}" if math.isnan(low) else f"{mean:.3f} ± {mean - low:.3f}"


def table(rows, metrics=METRICS):
    """Fixed-width text: variant, n, then mean ± CI half-width of each metric."""
    head = ["variant", "n", *metrics]
    body = [[r["variant"], str(r["n"]), *(_fmt(r, k) for k in metrics)] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
             for line in [head, *body]]
    return "\n".join(lines)


def write_csv(path, rows):
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def bar_plot(rows, path, title, metrics=METRICS):
    """One panel per metric: a bar per variant with its 95% CI as error bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(metrics), 4), dpi=100)
    FigureCanvasAgg(fig)
    names = [r["variant"] for r in rows]
    for i, key in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        means = np.array([r[f"{key}_mean"] for r in rows])
        errors = np.nan_to_num(np.array([r[f"{key}_ci_high"] for r in rows]) - means)
        ax.bar(range(len(rows)), means, yerr=errors, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(rows)), names, rotation=45, ha="right", fontsize="small")
        ax.set(title=key, ylim=(0, 1.02) if key.endswith("accuracy") else (0, None))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
