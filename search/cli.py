"""`keras-relu`: the command line over `search.run` and the other commands' functions.

Dispatch and exit statuses only (the parsers are in `search.cli_parsers`); the work is in
the functions it calls, and heavy libraries are imported only inside them. Exit status:
0 done, 2 bad input (one line on stderr, before any work), 1 failure during the work,
130 interrupted.
"""

import importlib.util
import inspect
import os
import sys
import warnings

from search import UsageError
from search.cli_parsers import build_parser

# What `pip install "keras-relu[search]"` brings and every command needs.
SEARCH_EXTRA = ("optuna", "optuna_integration", "keras_tuner", "mlflow", "sklearn", "yaml",
                "tqdm", "scipy", "matplotlib", "plotly")


def _keywords(args, function):
    """The parsed options that `function` takes, by name."""
    names = inspect.signature(function).parameters
    return {k: v for k, v in vars(args).items() if k in names}


def _search(args):
    from search.api import run
    from search.references import absolute

    if args.data:
        if args.dataset != "digits":
            raise UsageError("give --data or --dataset, not both")
        args.dataset, args.data = "data:" + absolute(args.data), None  # data= is for objects
    result = run(**_keywords(args, run))
    print(result.report())


def _worker(args):
    from search.parallel.worker import run_worker

    run_worker(**_keywords(args, run_worker))


def _ui(args):
    from search.ui import serve

    serve(args.tracking_uri, args.host, args.port)


def _compare(args):
    scenario_only = {"--activations": args.activations, "--cures": args.cures,
                     "--scenario": args.scenario, "--limit": args.limit,
                     "--dataset": args.dataset}
    if args.study:
        from search.compare_study import check_study

        given = [flag for flag, value in scenario_only.items() if value is not None]
        if given:
            raise UsageError(f"{given[0]} applies to a scenario, not to --study")
        check_study(**_keywords(args, check_study))
        return
    from search.compare import run_compare
    from search.scenarios import ACTIVATIONS, DEFAULT

    args.activations = [a.strip() for a in (args.activations or ",".join(ACTIVATIONS)).split(",")
                        if a.strip()]
    args.cures = [c.strip() for c in (args.cures or "none").split(",") if c.strip()]
    args.scenario, args.dataset = args.scenario or DEFAULT, args.dataset or "scenario"
    run_compare(**_keywords(args, run_compare))


def _retrain(args):
    from search.retraining import retrain

    print(retrain(**_keywords(args, retrain)).report())


def _best(args):
    from search.winner import show_best

    show_best(**_keywords(args, show_best))


def _inspect(args):
    from search import runtime
    from search.diagnose import run_inspect

    runtime.import_keras(args.backend)
    run_inspect(**_keywords(args, run_inspect))


def _storage_proxy(args):
    from search.proxy import serve

    serve(**_keywords(args, serve))


COMMANDS = {"search": _search, "worker": _worker, "ui": _ui, "compare": _compare,
            "best": _best, "retrain": _retrain, "inspect": _inspect,
            "storage-proxy": _storage_proxy}


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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # see search.noise
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
