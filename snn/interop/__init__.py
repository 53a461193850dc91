"""Interoperability with other SNN tools: snnTorch models and NIR graphs.

Torch, snnTorch and nir are imported only when one of these functions
is called, so ``import snn`` stays free of them.
"""

from __future__ import annotations


def from_snntorch(module, in_shape=None, **kwargs):
    """Import an ``nn.Sequential`` of snnTorch neurons and torch layers as a
    :class:`snn.Network` (a chain) or a :class:`snn.Graph` (``RLeaky``/
    ``RSynaptic``, or a delayed subtraction with ``beta < 1``); see
    :func:`snn.interop.snntorch.from_snntorch`."""
    from .snntorch import from_snntorch as _from_snntorch

    return _from_snntorch(module, in_shape, **kwargs)


def to_nir(network, dt=None, **kwargs):
    """Export a :class:`snn.Network` or :class:`snn.Graph` as a
    ``nir.NIRGraph`` (``dt``: 1.0 for a Network, the graph's ``dt`` for a
    Graph, if not given); see :func:`snn.interop.nir.to_nir` (semantics and
    refusals there)."""
    from .nir import to_nir as _to_nir

    return _to_nir(network, dt, **kwargs)


def from_nir(graph, dt=None, **kwargs):
    """Import a ``nir.NIRGraph`` (or the path of a NIR file) as a
    :class:`snn.Network` (a chain) or a :class:`snn.Graph` (recurrent,
    delayed, branching); see :func:`snn.interop.nir.from_nir`."""
    from .nir import from_nir as _from_nir

    return _from_nir(graph, dt, **kwargs)


__all__ = ["from_nir", "from_snntorch", "to_nir"]
