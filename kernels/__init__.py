"""Compiled kernels of the simulator: ``@njit`` functions over numpy arrays.

Imports only numpy and numba; never the user-facing ``snn`` package.
"""

from ._jit import precompile, run_samples
from .clock import clock_layer
from .conv import spatial_taps
from .drive import bound_drive, conv_drive, csr_drive, dense_drive, spike_currents
from .event import CONV, CSR, DENSE, conv_layer, csr_layer, dense_layer
from .graph import background_step, graph_init, graph_run
from .merge import conv_currents, csr_currents, dense_currents
from .neuron import REF, RESET_NONE, RESET_SUBTRACT, RESET_TO_VALUE, T_LAST, settle
from .pack import pack_rows
from .pool import maxpool_layer
from .rng import sample_states, seed_state
from .trains import busiest_step, screen_trains

__all__ = [
    "CONV",
    "CSR",
    "DENSE",
    "REF",
    "RESET_NONE",
    "RESET_SUBTRACT",
    "RESET_TO_VALUE",
    "T_LAST",
    "background_step",
    "clock_layer",
    "conv_currents",
    "bound_drive",
    "busiest_step",
    "conv_drive",
    "conv_layer",
    "csr_currents",
    "csr_drive",
    "csr_layer",
    "dense_currents",
    "dense_drive",
    "dense_layer",
    "graph_init",
    "graph_run",
    "maxpool_layer",
    "pack_rows",
    "precompile",
    "run_samples",
    "sample_states",
    "screen_trains",
    "seed_state",
    "settle",
    "spatial_taps",
    "spike_currents",
]
