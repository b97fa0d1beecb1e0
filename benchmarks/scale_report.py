"""The scale benchmark's Markdown: the table, then a line per row (where a trial's store
time goes, memory) and the real workers' latencies against the stand-ins'."""


def _pair(stats, op):
    s = stats.get(op)
    return f"{s['p50']:.1f} / {s['p99']:.0f}" if s else "-"


def table(rows):
    """The Markdown table of `rows` (and the real-vs-stand-in ratios, where both ran)."""
    lines = ["| N | config | trials/min | ask p50/p99 ms | report | prune check | tell | "
             "epoch log | store ms/trial (% of 10 s) | peak conns study/mlflow db | "
             "errors / retries | lost/dup/stuck | bad runs |",
             "|" + "---|" * 13]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['workers']} | {r['config']} ({r['kind']}) | failed: "
                         f"{r['error']} |" + " |" * 10)
            continue
        s, t, e = r["latency_ms"], r["trials"], r["errors"]
        per = r["per_trial"].get("total_ms", 0)
        conns = r["connections"]
        errs = sum(e["exceptions"].values()) + e["failed_workers"]
        short = f" ({t['short']} not run)" if t["short"] else ""
        lines.append(
            f"| {r['workers']}{' real' if r['kind'] == 'real' else ''} | {r['config']} | "
            f"{r['trials_per_min']:.0f} | {_pair(s, 'ask')} | {_pair(s, 'report')} | "
            f"{_pair(s, 'prune')} | {_pair(s, 'tell')} | {_pair(s, 'epoch_log')} | "
            f"{per:.0f} ({per / 100:.1f}%) | {conns.get('study_db', 0)}"
            f"{'/' + str(conns['mlflow_db']) if r['config'] == 'server' else ''} | "
            f"{errs} / {t['retried']} | {t['lost']}/{t['duplicated']}/{t['stuck']}{short} | "
            f"{r['runs']['mismatched']} |")
    return "\n".join(lines)


def notes(rows):
    """Lines under the table: memory per stand-in, and real / stand-in latency ratios."""
    lines = []
    for r in rows:
        if "error" in r:
            continue
        p, m = r["per_trial"], r["memory_kib"]
        ops = ", ".join(f"{op} {ms:.0f}" for op, ms in p.get("by_op_ms", {}).items())
        lines.append(f"- N={r['workers']} {r['config']} {r['kind']}: per trial Optuna "
                     f"{p.get('optuna_ms', 0):.0f} ms ({ops}; store round trips "
                     f"{p.get('optuna_store_ms', 0):.0f}) + MLflow {p.get('mlflow_ms', 0):.0f} ms"
                     + (f"; a stand-in {m['pss_median'] / 1024:.0f} MiB PSS "
                        f"({m['private_median'] / 1024:.0f} MiB private), all with their "
                        f"parent {(m['pss_sum'] + m['parent_pss']) / 2**20:.2f} GiB"
                        if r["kind"] == "stand-in" else ""))
    for r in rows:
        if "error" in r or r["kind"] != "real":
            continue
        m = r["memory_kib"]
        lines.append(f"- {r['workers']} real workers: {m['pss_median'] / 1024:.0f} MiB PSS each")
        twin = [s for s in rows if "error" not in s and s["kind"] == "stand-in"
                and s["config"] == r["config"] and s["workers"] == r["workers"]]
        if twin:
            ratios = [f"{op} {r['latency_ms'][op]['p50'] / twin[0]['latency_ms'][op]['p50']:.2f}x"
                      for op in ("ask", "report", "prune", "tell", "epoch_log")
                      if op in r["latency_ms"] and op in twin[0]["latency_ms"]]
            lines.append(f"- real / stand-in p50 at N={r['workers']} {r['config']}: "
                         + ", ".join(ratios))
    return "\n".join(lines)
