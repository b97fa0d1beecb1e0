"""The scale benchmark's invariants and figures, read back from the stores themselves.

Trials (Optuna, through a storage of its own): every trial asked ends COMPLETE, PRUNED or
FAIL, a FAIL is retried exactly once (Optuna's heartbeat retry), nothing is RUNNING or
WAITING at the end, no trial number was handed to two workers, and the workers ran the
trials they were asked for. Runs (MLflow, read with MlflowClient): each trial has exactly
one child run, closed with the status the product gives its state (FINISHED complete,
KILLED pruned, FAILED failed); no child run without a trial; none left RUNNING.
Latencies and the stores' time per trial come from the workers' `scale_timing` dumps.
"""

import json
import os

STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
PER_TRIAL_OPS = ("ask", "report", "prune", "attr", "tell", "best")


def check_trials(study, asked, expected):
    """{"trials", "counted", "lost", "duplicated", "stuck", "retried", "short"} of `study`:
    `asked` is every trial number the workers were given (the seed search's trial 0 is not
    in it), `expected` how many trials the seed and the workers were to run."""
    trials = study.get_trials(deepcopy=False)
    numbers = {t.number for t in trials}
    retried = [t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs]
    fails = [t.number for t in trials if t.state.name == "FAIL"]
    counted = [t for t in trials if t.number not in retried]
    return {
        "trials": len(trials), "counted": len(counted), "retried": len(retried),
        "stuck": sum(t.state.name in ("RUNNING", "WAITING") for t in trials),
        "duplicated": len(asked) - len(set(asked)) + sum(retried.count(n) > 1 for n in fails),
        # asked but not in the study, or failed and never retried
        "lost": len(set(asked) - numbers) + sum(n not in retried for n in fails),
        "short": max(0, expected - len(counted)),  # never run (a worker that died early)
    }


def check_runs(study, tracking_uri):
    """{"runs", "mismatched", "running"}: child runs of the study's experiment against its
    trials."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study.study_name)
    runs, token = [], None
    while experiment is not None:
        page = client.search_runs([experiment.experiment_id], max_results=1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    children = {}
    for run in runs:
        if "mlflow.parentRunId" in run.data.tags:
            children.setdefault(run.data.tags.get("trial_number"), []).append(run.info.status)
    trials = {str(t.number): t.state.name for t in study.get_trials(deepcopy=False)}
    bad = sum(statuses != [STATUS.get(trials[n])] for n, statuses in children.items()
              if n in trials)
    bad += sum(n not in trials for n in children) + sum(n not in children for n in trials)
    return {"runs": sum(map(len, children.values())), "mismatched": bad,
            "running": sum(s.count("RUNNING") for s in children.values())}


def throughput(study, skip=(0,)):
    """Trials a minute over the span of the workers' trials (first start to last end)."""
    done = [t for t in study.get_trials(deepcopy=False)
            if t.number not in skip and t.datetime_complete and t.datetime_start]
    if len(done) < 2:
        return 0.0, 0.0
    span = (max(t.datetime_complete for t in done) -
            min(t.datetime_start for t in done)).total_seconds()
    return 60 * len(done) / span, span


def load_dumps(folder, prefix):
    dumps = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(prefix) and name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                dumps.append(json.load(f))
    return dumps


def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def latencies(dumps):
    """{op: {"n", "p50", "p99", "store_p50", "total"}} in milliseconds over all dumps."""
    merged = {}
    for dump in dumps:
        for op, entries in dump["calls"].items():
            merged.setdefault(op, []).extend(entries)
    return {op: {"n": len(e), "p50": 1e3 * _pct([x[0] for x in e], 0.5),
                 "p99": 1e3 * _pct([x[0] for x in e], 0.99),
                 "store_p50": 1e3 * _pct([x[1] for x in e], 0.5),
                 "total": 1e3 * sum(x[0] for x in e), "store_total": 1e3 * sum(x[1] for x in e)}
            for op, e in merged.items()}


def _start_up(dump):
    """A worker's MLflow calls before its first trial, in milliseconds."""
    calls = dump["calls"]
    first = calls.get("mlflow.get_experiment_by_name", []) + calls.get("mlflow.get_run", [])[:1]
    return 1e3 * sum(x[0] for x in first)


def per_trial(stats, dumps, trials):
    """The stores' milliseconds per trial: the trial path's Optuna operations (wall time,
    and the part spent in store calls) and the MLflow store calls (in the writer thread)
    but a worker's start-up ones (the experiment's look-up, the parent run's adoption)."""
    if not trials:
        return {}
    optuna_ops = sum(stats.get(op, {}).get("total", 0) for op in PER_TRIAL_OPS)
    in_store = sum(stats.get(op, {}).get("store_total", 0) for op in PER_TRIAL_OPS)
    start_up = sum(_start_up(d) for d in dumps)
    mlflow = sum(v["total"] for op, v in stats.items()
                 if op.startswith("mlflow.") or op == "epoch_log") - start_up
    heartbeat = stats.get("optuna.record_heartbeat", {}).get("total", 0)
    return {"optuna_ms": optuna_ops / trials, "optuna_store_ms": in_store / trials,
            "mlflow_ms": mlflow / trials, "total_ms": (optuna_ops + mlflow) / trials,
            "heartbeat_ms": heartbeat / trials, "start_up_ms_per_worker": start_up / len(dumps),
            "by_op_ms": {op: stats[op]["total"] / trials for op in PER_TRIAL_OPS
                         if op in stats}}


def errors(dumps, codes):
    """{"exceptions": {"op: Name": count}, "failed_workers": n}."""
    merged = {}
    for dump in dumps:
        for key, count in dump["errors"].items():
            merged[key] = merged.get(key, 0) + count
    return {"exceptions": merged, "failed_workers": sum(code != 0 for code in codes)}
