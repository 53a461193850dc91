"""snn: an event-driven spiking neural network simulator.

Build a stack of layers, run it on spikes or analog input, read spikes and
exact operation counts per layer::

    import snn
    net = snn.Network([snn.Linear(784, 100, snn.LIF(beta=0.9)),
                       snn.Linear(100, 10, snn.LIF(beta=0.9))])
    result = net.run(spikes)          # spikes: 0/1 array [T, batch, 784]
    result.spikes(-1), result.counts, result.table()
"""

from .conv import AvgPool2d, Conv2d, Flatten, MaxPool2d
from .encoders import bernoulli
from .layers import Layer, Linear, SparseLinear
from .network import Network
from .neurons import IF, LIF, CubaLIF, Neuron, beta_from_tau, tau_from_beta
from .result import LayerCounts, RunResult
from .spiketrains import SpikeTrains

__all__ = [
    "IF", "LIF", "CubaLIF", "Neuron", "beta_from_tau", "tau_from_beta",
    "Layer", "Linear", "SparseLinear", "Network", "RunResult", "LayerCounts",
    "SpikeTrains", "bernoulli", "Conv2d", "AvgPool2d", "MaxPool2d", "Flatten",
]
__version__ = "0.1.0"
