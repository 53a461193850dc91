"""Compiled kernels of the simulator: ``@njit`` functions over numpy arrays.

Imports only numpy and numba; never the user-facing ``snn`` package.
"""

from .clock import clock_layer
from .event import conv_layer, csr_layer, dense_layer
from .graph import background_step, graph_init, graph_run
from .pool import maxpool_layer
from .neuron import RESET_SUBTRACT, RESET_TO_VALUE
from .rng import seed_state

__all__ = ["clock_layer", "conv_layer", "csr_layer", "dense_layer", "maxpool_layer", "graph_init", "graph_run",
           "background_step", "seed_state", "RESET_SUBTRACT", "RESET_TO_VALUE"]
