"""Interoperability with other SNN tools: snnTorch models (NIR: not yet).

Torch and snnTorch are imported only when one of these functions
is called, so ``import snn`` stays free of them.
"""

from __future__ import annotations


def from_snntorch(module, in_shape=None, **kwargs):
    """Import an ``nn.Sequential`` of snnTorch neurons and torch layers as a
    :class:`snn.Network`; see :func:`snn.interop.snntorch.from_snntorch`."""
    from .snntorch import from_snntorch as _from_snntorch
    return _from_snntorch(module, in_shape, **kwargs)


__all__ = ["from_snntorch"]
