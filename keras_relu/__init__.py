"""keras-relu: SUGAR ReLU, the activation zoo, dead-neuron metrics and cures for Keras 3."""

from keras_relu.initializers import RandomizedAsymmetric
from keras_relu.layers import ACTIVATIONS, SugarReLU, activation_layer
from keras_relu.monitor import DeadNeuronMonitor
from keras_relu.neurons import neuron_stats
from keras_relu.plots import plot_neuron_history, plot_unit_activity
from keras_relu.redo import ReDo
from keras_relu.sugar import sugar
from keras_relu.swap import SwapReport, replace_activations
from keras_relu.surrogates import SURROGATES, Surrogate, get_surrogate, register_surrogate

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "DeadNeuronMonitor",
    "RandomizedAsymmetric",
    "ReDo",
    "SURROGATES",
    "Surrogate",
    "SugarReLU",
    "SwapReport",
    "activation_layer",
    "get_surrogate",
    "neuron_stats",
    "plot_neuron_history",
    "plot_unit_activity",
    "register_surrogate",
    "replace_activations",
    "sugar",
]
