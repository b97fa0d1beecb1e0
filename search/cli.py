"""`keras-relu`: the command line over `search.run` and the other commands' functions.

Argument parsing and exit statuses only; the work is in the functions it calls, and
heavy libraries are imported only inside them. Exit status: 0 done, 2 bad input (one
line on stderr, before any work), 1 failure during the work, 130 interrupted.
"""

import argparse
import importlib.util
import inspect
import os
import sys
import warnings

from search import UsageError
from search.names import (BACKENDS, DATASETS_HELP, DIRECTIONS, ENGINES, OBJECTIVES, PRUNERS,
                          SAMPLERS, STORAGE_ENV, TUNERS)

# What `pip install "keras-relu[search]"` brings and every command needs.
SEARCH_EXTRA = ("optuna", "optuna_integration", "keras_tuner", "mlflow", "sklearn", "yaml",
                "tqdm", "scipy", "matplotlib", "plotly")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(kind):
    noun = {int: "an integer", float: "a number"}[kind]

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def build_parser():
    parser = _Parser(prog="keras-relu", description="Cures for the dying ReLU in Keras 3.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_search_parser(commands)
    _add_worker_parser(commands)
    _add_ui_parser(commands)
    _add_compare_parser(commands)
    _add_best_parser(commands)
    return parser


def _add_search_parser(commands):
    run = commands.add_parser(
        "search", help="hyperparameter search over the cures, tracked in MLflow",
        description="Search activations, initializers, normalisation, dropout, clipping, "
                    "schedules and optimizers; every trial is an MLflow run with "
                    "dead-neuron metrics next to accuracy.")
    run.add_argument("--engine", choices=ENGINES, default="optuna")
    run.add_argument("--tuner", choices=TUNERS, help="kerastuner: random (default), bayesian "
                                                     "or hyperband")
    run.add_argument("--overwrite", action="store_true",
                     help="kerastuner: start the study's project afresh instead of resuming it")
    run.add_argument("--trials", type=_positive(int), default=20, help="trials to run (default 20)")
    run.add_argument("--timeout", type=_positive(float), help="stop starting trials after SECONDS")
    run.add_argument("--epochs", type=_positive(int), default=5, help="epochs per trial (default 5)")
    run.add_argument("--batch-size", type=_positive(int), default=64)
    run.add_argument("--dataset", default="digits", help=DATASETS_HELP)
    run.add_argument("--model", metavar="REF", help="your model builder, MODULE:FUNCTION or "
                                                    "FILE.py:FUNCTION (default: the built-in "
                                                    "MLP / CNN)")
    run.add_argument("--metric", default="val_accuracy",
                     help="the objective, a key the model logs (default val_accuracy)")
    run.add_argument("--direction", choices=DIRECTIONS,
                     help="default: minimize a loss or error, else maximize")
    run.add_argument("--samples", type=_positive(int), default=2000, help="synthetic: samples")
    run.add_argument("--features", type=_positive(int), default=20, help="synthetic: features")
    run.add_argument("--classes", type=_positive(int), default=4, help="synthetic: classes")
    run.add_argument("--space", metavar="FILE", help="YAML or TOML file overriding the search space")
    run.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                     help="fix a dimension, e.g. activation=relu (repeatable)")
    run.add_argument("--choices", action="append", default=[], metavar="NAME=A,B",
                     help="narrow a dimension, e.g. activation=relu,sugar_bsilu (repeatable)")
    run.add_argument("--objective", choices=OBJECTIVES, default="accuracy",
                     help="accuracy: maximise val accuracy; pareto: also minimise dead fraction")
    run.add_argument("--pruner", choices=PRUNERS, help="optuna: median (default), hyperband or none")
    run.add_argument("--sampler", choices=SAMPLERS, help="optuna: tpe (default), random or gp")
    run.add_argument("--prune-dead-above", type=float, metavar="FRACTION",
                     help="prune a trial once its dead fraction is above FRACTION (0-1)")
    run.add_argument("--controls", action=argparse.BooleanOptionalAction, default=True,
                     help="optuna: a new study starts with control trials, plain ReLU on a "
                          "deep, narrow model and each cure on it (default: on)")
    run.add_argument("--study-name", help="same name resumes the study (default: the dataset); "
                                          "kerastuner keeps it in mlruns/keras_tuner/NAME")
    run.add_argument("--storage", help="optuna: SQLAlchemy URL or journal file "
                                       "(default mlruns/optuna.journal)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, "
                                            "else sqlite under ./mlruns)")
    run.add_argument("--backend", choices=BACKENDS,
                     help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--mixed-precision", action="store_true",
                     help="mixed float16 (bfloat16 on CPU) compute")
    run.add_argument("--workers", type=_positive(int),
                     help="worker processes on one study (default 1, or one per --devices)")
    run.add_argument("--devices", help="GPUs, e.g. 0,1: worker i gets CUDA_VISIBLE_DEVICES "
                                       "= device i mod count")
    run.add_argument("--trials-per-process", type=_positive(int), metavar="N",
                     help="optuna: a fresh worker process every N trials (default: 25 on "
                          "TensorFlow, whose memory grows with every fit; else no limit)")


def _add_worker_parser(commands):
    w = commands.add_parser("worker", help="join an existing study (e.g. on another machine)",
                            description="Run trials of a study created by `keras-relu search` "
                                        "from the settings stored in it; MLflow child runs go "
                                        "to --tracking-uri.")
    w.add_argument("--study-name", required=True)
    w.add_argument("--engine", choices=ENGINES, default="optuna",
                   help="kerastuner: KERASTUNER_TUNER_ID/ORACLE_IP/ORACLE_PORT from the "
                        "environment, the project under ./mlruns/keras_tuner")
    w.add_argument("--storage", help=f"study storage URL (default: ${STORAGE_ENV})")
    w.add_argument("--trials", type=_positive(int), default=10, help="trials this worker runs")
    w.add_argument("--timeout", type=_positive(float), help="stop starting trials after SECONDS")
    w.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, "
                                          "else the search's, else sqlite under ./mlruns)")
    w.add_argument("--parent-run-id", help="MLflow parent run (default: the search's)")
    w.add_argument("--backend", choices=BACKENDS)
    w.add_argument("--worker-id", help="name in trials and logs (default HOST:PID)")
    w.add_argument("--model", metavar="REF", help="the model builder here, if its reference "
                                                  "stored with the study does not import")
    w.add_argument("--quiet", action="store_true",
                   help="no line per trial (its launcher shows the search's progress)")


def _add_best_parser(commands):
    best = commands.add_parser("best", help="the best model and config of a search",
                               description="Print the best config and its scores of the last "
                                           "finished search of a study, copy its .keras file "
                                           "and best.yaml out, optionally register the model.")
    best.add_argument("--study-name", help="default: the most recent search of any study")
    best.add_argument("--output", default=".", help="folder for <study>.keras and "
                                                    "<study>.best.yaml (default .)")
    best.add_argument("--register-model", metavar="NAME",
                      help="register the model in MLflow's Model Registry as NAME")
    best.add_argument("--tracking-uri", help="MLflow tracking URI (default as for search)")


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
        "compare", help="activations and cures side by side over seeds: mean and 95%% CI",
        description="Train each activation (with each cure) on one scenario over several "
                    "seeds; report test "
                    "accuracy, dead and dormant fraction (mean, 95% t-interval) as a table, "
                    "a CSV and a bar plot, logged to MLflow.")
    cmp.add_argument("--activations", default=",".join(ACTIVATIONS),
                     help=f"comma-separated (default {','.join(ACTIVATIONS)})")
    cmp.add_argument("--cures", default="none", help="comma-separated: none, redo, rai, "
                                                     "residual (default none); each is a row "
                                                     "with each activation, e.g. relu+redo")
    cmp.add_argument("--seeds", type=_positive(int), default=5, help="seeds 0..N-1 (default 5)")
    cmp.add_argument("--epochs", type=_positive(int), help="default: the scenario's")
    cmp.add_argument("--scenario", default=DEFAULT, help=f"{', '.join(SCENARIOS)} (default {DEFAULT})")
    cmp.add_argument("--limit", type=_positive(int), help="train on the first N images/samples")
    cmp.add_argument("--dataset", choices=("scenario", "synthetic"), default="scenario",
                     help="synthetic: a random stand-in of the scenario's shape (tests)")
    cmp.add_argument("--output", default="mlruns/compare", help="folder for CSV and plot "
                     "(default mlruns/compare)")
    cmp.add_argument("--tracking-uri", help="MLflow tracking URI (default as for search)")
    cmp.add_argument("--backend", choices=BACKENDS,
                     help="Keras backend (default: KERAS_BACKEND, else tensorflow)")


def _keywords(args, function):
    """The parsed options that `function` takes, by name."""
    names = inspect.signature(function).parameters
    return {k: v for k, v in vars(args).items() if k in names}


def _search(args):
    from search.api import run

    result = run(**_keywords(args, run))
    print(result.report())


def _worker(args):
    from search.parallel.worker import run_worker

    run_worker(**_keywords(args, run_worker))


def _ui(args):
    from search.ui import serve

    serve(args.tracking_uri, args.host, args.port)


def _compare(args):
    from search.compare import run_compare

    args.activations = [a.strip() for a in args.activations.split(",") if a.strip()]
    args.cures = [c.strip() for c in args.cures.split(",") if c.strip()]
    run_compare(**_keywords(args, run_compare))


def _best(args):
    from search.winner import show_best

    show_best(**_keywords(args, show_best))


COMMANDS = {"search": _search, "worker": _worker, "ui": _ui, "compare": _compare,
            "best": _best}


def _one_line_warning(message, category, *args, **kwargs):
    return f"keras-relu: warning: {message}\n"


def missing_extra():
    """The modules of the `search` extra that are not installed."""
    return [name for name in SEARCH_EXTRA if not _installed(name)]


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # imported already, by a lazy loader that left no __spec__
        return True


def main(argv=None):
    """Entry point of the `keras-relu` console script; returns the exit status. SIGTERM
    stops a command like Ctrl-C from its first moment (exit 130), and every line it
    prints has URL passwords masked (`search.secrets.MaskedStream`)."""
    from search.signals import interrupts_never_lost, sigterm_as_interrupt
    from search.secrets import masked_output

    with masked_output(), sigterm_as_interrupt(), interrupts_never_lost():
        try:
            return _main(argv)
        except KeyboardInterrupt:
            print("keras-relu: interrupted", file=sys.stderr)
            return 130


def _main(argv):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code
    if args.command is None:
        parser.print_help()
        return 2
    missing = missing_extra()
    if missing:
        print(f"keras-relu: the command line needs the search extra (missing: "
              f"{', '.join(missing)}): pip install 'keras-relu[search]'", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # see search.runtime.import_keras
    formatwarning, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        COMMANDS[args.command](args)
        return 0
    except UsageError as err:
        print(f"keras-relu {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        from search.secrets import mask_text

        message = mask_text(str(err)).strip().splitlines()  # a URL's password, if any
        print(f"keras-relu {args.command}: failed: {type(err).__name__}: "
              f"{message[0] if message else ''}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
