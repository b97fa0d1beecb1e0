"""`keras-relu`: the command line. Heavy libraries are imported only inside commands.

Exit status: 0 done, 2 bad input (one line on stderr, before any model is built),
1 failure during the work, 130 interrupted.
"""

import argparse
import contextlib
import os
import sys
import tempfile

from search import UsageError

DATASET_HELP = "digits (default, bundled), synthetic, mnist, fashion_mnist, cifar10 or npz:PATH"
TUNERS = ("random", "bayesian", "hyperband")  # search.engines.kerastuner.TUNERS (a test checks)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def build_parser():
    parser = _Parser(prog="keras-relu", description="Cures for the dying ReLU in Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "search", help="hyperparameter search over the cures, tracked in MLflow",
        description="Search activations, initializers, normalisation, dropout, clipping, "
                    "schedules and optimizers; every trial is an MLflow run with "
                    "dead-neuron metrics next to accuracy.",
    )
    run.add_argument("--engine", choices=("optuna", "kerastuner"), default="optuna")
    run.add_argument("--tuner", choices=TUNERS,
                     help="kerastuner: random (default), bayesian or hyperband")
    run.add_argument("--overwrite", action="store_true",
                     help="kerastuner: start the study's project afresh instead of resuming it")
    run.add_argument("--trials", type=_positive(int), default=20, help="trials to run (default 20)")
    run.add_argument("--timeout", type=_positive(float), help="stop starting trials after SECONDS")
    run.add_argument("--epochs", type=_positive(int), default=5, help="epochs per trial (default 5)")
    run.add_argument("--batch-size", type=_positive(int), default=64)
    run.add_argument("--dataset", default="digits", help=DATASET_HELP)
    run.add_argument("--samples", type=_positive(int), default=2000, help="synthetic: samples")
    run.add_argument("--features", type=_positive(int), default=20, help="synthetic: features")
    run.add_argument("--classes", type=_positive(int), default=4, help="synthetic: classes")
    run.add_argument("--space", metavar="FILE", help="YAML or TOML file overriding the search space")
    run.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                     help="fix a dimension, e.g. activation=relu (repeatable)")
    run.add_argument("--choices", action="append", default=[], metavar="NAME=A,B",
                     help="narrow a dimension, e.g. activation=relu,sugar_bsilu (repeatable)")
    run.add_argument("--objective", choices=("accuracy", "pareto"), default="accuracy",
                     help="accuracy: maximise val accuracy; pareto: also minimise dead fraction")
    run.add_argument("--pruner", choices=("median", "hyperband", "none"),
                     help="optuna: median (default), hyperband or none")
    run.add_argument("--study-name", help="same name resumes the study (default: the dataset); "
                                          "kerastuner keeps it in mlruns/keras_tuner/NAME")
    run.add_argument("--storage", help="optuna: SQLAlchemy URL or journal file "
                                       "(default mlruns/optuna.journal)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, "
                                            "else sqlite under ./mlruns)")
    run.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                     help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--mixed-precision", action="store_true",
                     help="mixed float16 (bfloat16 on CPU) compute")
    from search.workers import add_search_options, add_worker_parser

    add_search_options(run, _positive)
    add_worker_parser(commands, _positive)
    _add_ui_parser(commands)
    _add_compare_parser(commands)
    return parser


def _add_ui_parser(commands):
    ui = commands.add_parser("ui", help="the MLflow UI over the runs `search` and `compare` wrote",
                             description="Start the MLflow UI on the project's store and print "
                                         "its URL; Ctrl-C stops it.")
    ui.add_argument("--port", type=_positive(int), default=5000, help="default 5000")
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    ui.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, "
                                           "else sqlite under ./mlruns)")


def _add_compare_parser(commands):
    from search.scenarios import ACTIVATIONS, DEFAULT, SCENARIOS

    cmp = commands.add_parser(
        "compare", help="activations side by side over seeds: mean and 95%% CI",
        description="Train each activation on one scenario over several seeds; report test "
                    "accuracy, dead and dormant fraction (mean, 95% t-interval) as a table, "
                    "a CSV and a bar plot, logged to MLflow.")
    cmp.add_argument("--activations", default=",".join(ACTIVATIONS),
                     help=f"comma-separated (default {','.join(ACTIVATIONS)})")
    cmp.add_argument("--seeds", type=_positive(int), default=5, help="seeds 0..N-1 (default 5)")
    cmp.add_argument("--epochs", type=_positive(int), help="default: the scenario's")
    cmp.add_argument("--scenario", default=DEFAULT, help=f"{', '.join(SCENARIOS)} (default {DEFAULT})")
    cmp.add_argument("--limit", type=_positive(int), help="train on the first N images/samples")
    cmp.add_argument("--dataset", choices=("scenario", "synthetic"), default="scenario",
                     help="synthetic: a random stand-in of the scenario's shape (tests)")
    cmp.add_argument("--output", default="compare_results", help="folder for CSV and plot")
    cmp.add_argument("--tracking-uri", help="MLflow tracking URI (default as for search)")
    cmp.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                     help="Keras backend (default: KERAS_BACKEND, else tensorflow)")


@contextlib.contextmanager
def _quiet_native_logs():
    """Hide what native libraries print on stderr while importing (TensorFlow's INFO lines)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv=None):
    """Entry point of the `keras-relu` console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code
    if getattr(args, "backend", None):
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    state = {}
    command = {"search": _search, "ui": _ui, "compare": _compare, "worker": _worker}[args.command]
    try:
        return command(args, state)
    except UsageError as err:
        print(f"keras-relu {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_parent(state, "KILLED")
        print("keras-relu: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        _close_parent(state, "FAILED")
        message = str(err).strip().splitlines()
        print(f"keras-relu {args.command}: failed: {type(err).__name__}: "
              f"{message[0] if message else ''}", file=sys.stderr)
        return 1


def _close_parent(state, status):
    tracker = state.get("tracker")
    if tracker is not None and tracker.parent_id:
        with contextlib.suppress(Exception):
            tracker.finish_parent(status)


def _check_engine_options(args):
    """An option of the other engine is a usage error, before any work."""
    if args.engine == "optuna":
        given = {"--tuner": args.tuner, "--overwrite": args.overwrite}
    else:
        given = {"--pruner": args.pruner, "--storage": args.storage,
                 "--objective pareto": args.objective == "pareto"}
    other = "kerastuner" if args.engine == "optuna" else "optuna"
    for option, value in given.items():
        if value:
            raise UsageError(f"{option} applies to --engine {other} only")


def _search(args, state):
    _check_engine_options(args)
    args.workers = args.workers or len([d for d in (args.devices or "").split(",") if d]) or 1
    if args.workers > 1 and args.engine == "optuna" and (args.storage or "").startswith("sqlite"):
        raise UsageError("--workers: SQLite is not safe for parallel writers; use the default "
                         "journal file, postgresql:// or mysql+pymysql://")
    from search import data as datasets

    datasets.check_spec(args.dataset)
    with _quiet_native_logs():
        import keras

        from search.space import build_space
    if args.backend and keras.backend.backend() != args.backend:
        raise UsageError(f"--backend {args.backend}: Keras already runs on {keras.backend.backend()}")
    space = build_space(args.space, args.fix, args.choices)
    data = datasets.load(args.dataset, args.seed, args.samples, args.features, args.classes)

    from search.tracking import Tracker, mask_url, resolve_tracking_uri, ui_command
    from search.trial import TrialSettings

    study_name = args.study_name or datasets.slug(args.dataset) + (
        "-pareto" if args.objective == "pareto" else "")
    if args.engine == "kerastuner":
        from search.engines import kerastuner as engine

        study = engine.open_study(args.tuner or "random", study_name, space, args.dataset,
                                  args.epochs, args.seed, args.overwrite)
        where, chosen = str(study.directory), {"tuner": study.tuner_name}
    else:
        import optuna

        from search.engines import optuna as engine

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        storage = engine.open_storage(args.storage)
        pruner = args.pruner or "median"
        study = engine.open_study(study_name, storage, args.objective, space, args.dataset,
                                  args.seed, engine.make_pruner(pruner, args.epochs))
        where, chosen = mask_url(args.storage or engine.DEFAULT_STORAGE), {"pruner": pruner}
    uri = resolve_tracking_uri(args.tracking_uri)
    tracker = state["tracker"] = Tracker(uri, study_name)
    settings = TrialSettings(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    tracker.start_parent(
        params={"engine": args.engine, "dataset": args.dataset, "objective": args.objective,
                **chosen, "trials": args.trials, "timeout": args.timeout,
                "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                "backend": keras.backend.backend(), "mixed_precision": args.mixed_precision,
                "storage": where},
        tags={"engine": args.engine, "study_name": study_name, "kind": "search"},
    )
    tracker.client.log_dict(tracker.parent_id, space_as_dict(space), "space.json")
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy(_mixed_policy())

    from search.report import Progress, best_summary, table

    before = len(study.trials)
    with Progress(args.trials) as progress:
        if args.workers > 1 and args.engine == "optuna":
            from search.workers import run_search

            run_search(study, args.storage or engine.DEFAULT_STORAGE, args, space, tracker,
                       progress.on_trial)
        elif args.workers > 1:
            from search.kt_workers import run_search

            run_search(study, args, space, tracker, progress.on_trial)
        else:
            engine.optimize(study, space, data, settings, tracker, args.trials, args.timeout,
                            callbacks=[progress.on_trial])
    best = engine.best_trials(study)
    text = table(best, multi=args.objective == "pareto")
    from search.artifacts import log_search_artifacts

    log_search_artifacts(tracker, engine.as_optuna_study(study)
                         if args.engine == "kerastuner" else study)
    tracker.finish_parent("FINISHED", best_summary(best, args.objective), text)
    print(f"study {study_name!r}: {len(study.trials) - before} new trials, "
          f"{len(study.trials)} in all ({where})")
    print("Pareto front:" if args.objective == "pareto" else "Best trials:")
    print(text)
    print(f"MLflow runs: {ui_command(uri)}")
    return 0


def _worker(args, state):
    from search.workers import run_worker

    return run_worker(args, state)


def _ui(args, state):
    from search.ui import serve

    return serve(args.tracking_uri, args.host, args.port)


def _compare(args, state):
    with _quiet_native_logs():
        import keras  # noqa: F401  (the backend's import-time lines go nowhere)

    from search.compare import run_compare

    return run_compare(args, state)


def space_as_dict(space):
    """The space as plain data, for the parent run's `space.json`."""
    import dataclasses

    return {dim.name: {"type": type(dim).__name__, **dataclasses.asdict(dim)} for dim in space}


def _mixed_policy():
    import keras

    try:
        has_gpu = any("gpu" in d.lower() or "cuda" in d.lower()
                      for d in keras.distribution.list_devices())
    except Exception:
        has_gpu = False
    return "mixed_float16" if has_gpu else "mixed_bfloat16"


if __name__ == "__main__":
    sys.exit(main())
