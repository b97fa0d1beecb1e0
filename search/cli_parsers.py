"""The argument parsers of `keras-relu` and its commands (what `--help` shows).

Light: argparse and the choices in `search.names`; no Keras, TensorFlow or MLflow.
"""

import argparse

from search.names import (BACKENDS, DATASETS_HELP, DIRECTIONS, ENGINES, OBJECTIVES, PRUNERS,
                          SAMPLERS, STORAGE_ENV, TUNERS)


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


def _size(text):
    """`64` or `64,48` -> (64, 64) or (64, 48)."""
    try:
        size = tuple(int(v) for v in text.split(","))
    except ValueError:
        size = ()
    if len(size) == 1:
        size *= 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected H or H,W (pixels), got {text!r}")
    return size


def build_parser():
    parser = _Parser(prog="keras-relu", description="Cures for the dying ReLU in Keras 3.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_search_parser(commands)
    _add_worker_parser(commands)
    _add_ui_parser(commands)
    _add_compare_parser(commands)
    _add_best_parser(commands)
    _add_retrain_parser(commands)
    _add_inspect_parser(commands)
    _add_proxy_parser(commands)
    return parser


def _add_proxy_parser(commands):
    proxy = commands.add_parser(
        "storage-proxy", help="serve a study database to many workers over gRPC",
        description="Serve the Optuna study database --storage (PostgreSQL or MySQL) through "
                    "Optuna's gRPC storage proxy: workers join with --storage "
                    "grpc://HOST:PORT and the database sees a few connections, not a few per "
                    "worker. SIGTERM or Ctrl-C stops it.")
    proxy.add_argument("--storage", help=f"the database's SQLAlchemy URL (default: "
                                         f"${STORAGE_ENV})")
    proxy.add_argument("--host", default="127.0.0.1", help="interface to listen on (default "
                                                          "127.0.0.1; 0.0.0.0: every one)")
    proxy.add_argument("--port", type=_positive(int), default=13000, help="default 13000")


def _add_search_parser(commands):
    run = commands.add_parser(
        "search", help="hyperparameter search over the cures, tracked in MLflow",
        description="Search activations, initializers, normalisation, dropout, clipping, "
                    "schedules and optimizers; every trial is an MLflow run with "
                    "dead-neuron metrics next to accuracy.")
    run.add_argument("--engine", choices=ENGINES, default="optuna",
                     help="optuna (default) or kerastuner")
    run.add_argument("--tuner", choices=TUNERS, help="kerastuner: random (default), bayesian "
                                                     "or hyperband")
    run.add_argument("--overwrite", action="store_true",
                     help="kerastuner: start the study's project afresh instead of resuming it")
    run.add_argument("--trials", type=_positive(int), default=20, help="trials to run (default 20)")
    run.add_argument("--timeout", type=_positive(float), help="stop starting trials after SECONDS")
    run.add_argument("--epochs", type=_positive(int), default=5, help="epochs per trial (default 5)")
    run.add_argument("--batch-size", type=_positive(int), default=64,
                     help="batch size per trial (default 64)")
    _add_data_options(run)
    run.add_argument("--metric", default="val_accuracy",
                     help="the objective, a key the model logs (default val_accuracy)")
    run.add_argument("--direction", choices=DIRECTIONS,
                     help="default: minimize a loss or error, else maximize")
    run.add_argument("--samples", type=_positive(int), default=2000, help="synthetic: samples")
    run.add_argument("--features", type=_positive(int), default=20, help="synthetic: features")
    run.add_argument("--classes", type=_positive(int), default=4, help="synthetic: classes")
    run.add_argument("--space", metavar="FILE", help="YAML, JSON or TOML file overriding the "
                                                     "search space")
    run.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                     help="fix a dimension, e.g. activation=relu (repeatable)")
    run.add_argument("--choices", action="append", default=[], metavar="NAME=A,B",
                     help="narrow a dimension, e.g. activation=relu,sugar_bsilu (repeatable)")
    run.add_argument("--objective", choices=OBJECTIVES, default="accuracy",
                     help="accuracy: optimise --metric alone (default); pareto: --metric "
                          "and the dead fraction (minimised) together")
    run.add_argument("--pruner", choices=PRUNERS, help="optuna: median (default), hyperband or none")
    run.add_argument("--sampler", choices=SAMPLERS, help="optuna: tpe (default), random or gp")
    run.add_argument("--prune-dead-above", type=float, metavar="FRACTION",
                     help="prune a trial once its dead fraction is above FRACTION (0-1)")
    run.add_argument("--controls", action=argparse.BooleanOptionalAction, default=True,
                     help="optuna: a new study starts with control trials, plain ReLU on a "
                          "deep, narrow model and each cure on it (default: on)")
    _add_where_options(run)


def _add_data_options(run):
    """The model and data options of `search`: as users have them."""
    run.add_argument("--dataset", default="digits", help=DATASETS_HELP)
    run.add_argument("--data", metavar="REF",
                     help="MODULE:FUNCTION or FILE.py:FUNCTION returning (train, validation"
                          "[, test]): pipelines (tf.data, PyDataset, DataLoader) or (x, y) arrays")
    run.add_argument("--image-size", type=_size, metavar="H[,W]",
                     help="images:DIR: resize to this (default: the first image's size)")
    run.add_argument("--steps-per-epoch", type=_positive(int), metavar="N",
                     help="pipelines whose length is unknown: batches per epoch")
    run.add_argument("--num-classes", type=_positive(int), metavar="N",
                     help="pipelines: classes (default: read off the first batches)")
    run.add_argument("--model", metavar="REF",
                     help="your model: a builder or factory MODULE:FUNCTION or FILE.py:FUNCTION, "
                          "or FILE.keras (default: the built-in MLP / CNN)")
    run.add_argument("--reinitialize", action="store_true",
                     help="a .keras model's trials start from fresh weights (the trial's "
                          "initializer), not from the file's")


def _add_where_options(run):
    """Where a search keeps its study and runs, and the processes it runs in."""
    run.add_argument("--study-name", help="same name resumes the study (default: the dataset); "
                                          "kerastuner keeps it in mlruns/keras_tuner/NAME")
    run.add_argument("--storage", help="optuna: SQLAlchemy URL or journal file "
                                       "(default mlruns/optuna.journal)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, "
                                            "else sqlite under ./mlruns)")
    run.add_argument("--backend", choices=BACKENDS,
                     help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    run.add_argument("--seed", type=int, default=0,
                     help="the data split and the samplers; trial N trains with SEED + N "
                          "(default 0)")
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
    w.add_argument("--study-name", required=True, help="the study to join")
    w.add_argument("--engine", choices=ENGINES, default="optuna",
                   help="kerastuner: KERASTUNER_TUNER_ID/ORACLE_IP/ORACLE_PORT from the "
                        "environment, the project under ./mlruns/keras_tuner")
    w.add_argument("--storage", help=f"study storage URL (default: ${STORAGE_ENV})")
    w.add_argument("--trials", type=_positive(int), default=10, help="trials this worker runs")
    w.add_argument("--timeout", type=_positive(float), help="stop starting trials after SECONDS")
    w.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, "
                                          "else the search's, else sqlite under ./mlruns)")
    w.add_argument("--parent-run-id", help="MLflow parent run (default: the search's)")
    w.add_argument("--backend", choices=BACKENDS,
                   help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
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


def _add_retrain_parser(commands):
    again = commands.add_parser(
        "retrain", help="train a search's winner again: the same config, data and seed",
        description="Train the winner in a winner's file (mlruns/best/<study>.yaml, or "
                    "<study>.best.yaml from `keras-relu best`) again, in a study of its own: "
                    "its model, data set, epochs, batch size and the trial's own seed, as "
                    "recorded. On the same backend and machine the validation score comes "
                    "back the same.")
    again.add_argument("path", metavar="FILE", help="the winner's file")
    again.add_argument("--study-name", help="default: <study>-retrain-<trial>")
    again.add_argument("--model", metavar="REF", help="the model builder here, if the "
                                                      "recorded reference moved")
    again.add_argument("--dataset", help="the data set here, if the recorded npz file moved")
    again.add_argument("--storage", help="optuna: SQLAlchemy URL or journal file "
                                         "(default mlruns/optuna.journal)")
    again.add_argument("--tracking-uri", help="MLflow tracking URI (default as for search)")
    again.add_argument("--backend", choices=BACKENDS,
                       help="Keras backend (default: the recorded one; another one warns)")


def _add_inspect_parser(commands):
    ins = commands.add_parser("inspect", help="dead ReLUs of a saved model, per layer",
                              description="Measure a saved .keras model's dead, dormant and "
                                          "zero fractions per layer on a data set; print them "
                                          "with the dead units of the worst layers, write the "
                                          "unit-activity heatmap, optionally log an MLflow run.")
    ins.add_argument("model", metavar="MODEL.keras", help="the saved model")
    ins.add_argument("--dataset", default="digits", help=DATASETS_HELP)
    ins.add_argument("--split", choices=("train", "val", "test"), default="train",
                     help="which split's inputs to measure on (default train)")
    ins.add_argument("--samples", type=_positive(int), default=2048,
                     help="at most this many samples, drawn once by --seed (default 2048)")
    ins.add_argument("--seed", type=int, default=0, help="the data split's and draw's seed "
                                                         "(default 0)")
    ins.add_argument("--worst", type=_positive(int), default=3,
                     help="list the dead units of this many worst layers (default 3)")
    ins.add_argument("--output", default="mlruns/inspect", help="folder for unit_activity.png "
                     "and neuron_stats.json (default mlruns/inspect)")
    ins.add_argument("--tracking-uri", help="also log the figures as an MLflow run here")
    ins.add_argument("--backend", choices=BACKENDS,
                     help="Keras backend (default: KERAS_BACKEND, else tensorflow)")


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
    cmp.add_argument("--activations", help=f"comma-separated (default {','.join(ACTIVATIONS)})")
    cmp.add_argument("--cures", help="comma-separated: none, redo, rai, residual (default "
                                     "none); each is a row with each activation, e.g. relu+redo")
    cmp.add_argument("--seeds", type=_positive(int), default=5,
                     help="seeds 0..N-1; --study: N fresh seeds, none a trial's (default 5)")
    cmp.add_argument("--epochs", type=_positive(int), help="default: the scenario's (the "
                                                           "study's)")
    cmp.add_argument("--scenario", help=f"{', '.join(SCENARIOS)} (default {DEFAULT})")
    cmp.add_argument("--limit", type=_positive(int), help="train on the first N images/samples")
    cmp.add_argument("--dataset", choices=("scenario", "synthetic"),
                     help="synthetic: a random stand-in of the scenario's shape (tests)")
    cmp.add_argument("--study", metavar="NAME",
                     help="instead of a scenario: the top configs of study NAME's last search "
                          "and a plain-ReLU baseline of its model, over fresh seeds on the "
                          "search's own data split: is the winner real or seed luck?")
    cmp.add_argument("--top", type=_positive(int), default=3,
                     help="--study: the best N configs (default 3; a search keeps 5)")
    cmp.add_argument("--output", default="mlruns/compare", help="folder for CSV and plot "
                     "(default mlruns/compare)")
    cmp.add_argument("--tracking-uri", help="MLflow tracking URI (default as for search)")
    cmp.add_argument("--backend", choices=BACKENDS,
                     help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
