"""The names the command line offers and the engines accept, in one light module.

Nothing here imports Keras, Optuna or MLflow, so `keras-relu --help` stays fast; the
engines check their own tables against these (a test does too).
"""

ENGINES = ("optuna", "kerastuner")
TUNERS = ("random", "bayesian", "hyperband")  # kerastuner
PRUNERS = ("median", "hyperband", "none")  # optuna
SAMPLERS = ("tpe", "random", "gp")  # optuna
DIRECTIONS = ("maximize", "minimize")
OBJECTIVES = ("accuracy", "pareto")
BACKENDS = ("tensorflow", "jax", "torch")
DATASETS_HELP = ("digits (default, bundled), synthetic, mnist, fashion_mnist, cifar10, "
                 "npz:PATH or images:DIR (class sub-folders)")
DEFAULT_STORAGE = "mlruns/optuna.journal"  # optuna, relative to the working directory
STORAGE_ENV = "KERAS_RELU_STORAGE"  # keeps a storage password off the command line
