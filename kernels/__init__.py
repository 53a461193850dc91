"""Compiled kernels of the simulator: ``@njit`` functions over numpy arrays.

Imports only numpy and numba; never the user-facing ``snn`` package.
"""

from .clock import clock_layer
from .event import csr_layer, dense_layer
from .neuron import RESET_SUBTRACT, RESET_TO_VALUE

__all__ = ["clock_layer", "csr_layer", "dense_layer", "RESET_SUBTRACT", "RESET_TO_VALUE"]
