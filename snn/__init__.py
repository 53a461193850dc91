"""snn: an event-driven spiking neural network simulator.

Build a stack of layers, run it on spikes or analog input, read spikes and
exact operation counts per layer::

    import snn
    net = snn.Network([snn.Linear(784, 100, snn.LIF(beta=0.9)),
                       snn.Linear(100, 10, snn.LIF(beta=0.9))])
    result = net.run(spikes)          # spikes: 0/1 array [T, batch, 784]
    result.spikes(-1), result.counts, result.table()
"""

from . import models  # noqa: F401 -- snn.models.brunel(...)
from .encoders import bernoulli, direct, latency, poisson, rate
from .events import bin_events, saccade_events  # snn.events: event-camera streams (tonic's format)
from .interop import from_nir, from_snntorch, to_nir  # lazy: torch, snntorch, nir load on call
from .io import load, save
from .model.connectivity import fixed_in_degree, fixed_out_degree, fixed_probability
from .model.conv import AvgPool2d, Conv2d, Flatten, MaxPool2d
from .model.graph import Graph, Population, Projection
from .model.layers import Layer, Linear, SparseLinear
from .model.network import Network
from .model.neurons import IF, LIF, CubaLIF, Neuron, beta_from_tau, tau_from_beta
from .profile import Profile, profile
from .run import observers  # noqa: F401 -- snn.observers.PopulationRate(...), plugged into start()
from .run.graph_result import GraphResult
from .run.paths import release_memory
from .run.result import LayerCounts, RunResult
from .run.spiketrains import SpikeTrains

__all__ = [
    "IF",
    "LIF",
    "CubaLIF",
    "Neuron",
    "beta_from_tau",
    "tau_from_beta",
    "Layer",
    "Linear",
    "SparseLinear",
    "Network",
    "RunResult",
    "LayerCounts",
    "SpikeTrains",
    "bernoulli",
    "Conv2d",
    "AvgPool2d",
    "MaxPool2d",
    "Flatten",
    "Graph",
    "Population",
    "Projection",
    "GraphResult",
    "rate",
    "poisson",
    "latency",
    "direct",
    "fixed_probability",
    "fixed_in_degree",
    "fixed_out_degree",
    "save",
    "load",
    "profile",
    "Profile",
    "from_snntorch",
    "to_nir",
    "from_nir",
    "bin_events",
    "saccade_events",
    "release_memory",
]
__version__ = "0.1.0"
