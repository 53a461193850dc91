"""Spike trains as the kernels read them, checked.

Time-CSR trains (``snn.SpikeTrains``): the neurons that spiked at step ``t``
of sample ``b`` are ``idx[b, tptr[b, t]:tptr[b, t + 1]]``."""

from ._jit import jit


@jit
def screen_trains(tptr, idx, n, suspect):
    """Screen trains ``tptr`` (int64 ``[B, T + 1]``) and ``idx`` (int32
    ``[B, cap]``) of ``n`` neurons in one pass over their spikes. Returns the
    first sample whose offsets the kernels cannot read (not starting at 0,
    decreasing, or past ``cap``), -1 if none, before reading its spikes;
    ``suspect[b]`` (uint8 ``[B]``) is set to 1 where a sample before it has
    a neuron outside ``[0, n)`` or neurons not increasing within a step (a
    neuron twice in a step, or valid spikes in another order: the caller
    tells them apart), 0 where it has neither."""
    cap = idx.shape[1]
    for b in range(tptr.shape[0]):
        suspect[b] = 0
        if tptr[b, 0] != 0:
            return b
        for t in range(tptr.shape[1] - 1):
            e0 = tptr[b, t]
            e1 = tptr[b, t + 1]
            if e1 < e0 or e1 > cap:
                return b
            last = -1  # (a neuron below 0 is not above it)
            for e in range(e0, e1):
                j = idx[b, e]
                if j <= last or j >= n:
                    suspect[b] = 1
                last = j
    return -1


@jit
def busiest_step(tptr):
    """The most spikes in one step of any sample of trains with offsets
    ``tptr`` (int64 ``[B, T + 1]``, non-decreasing: checked trains); 0
    without steps."""
    most = 0
    for b in range(tptr.shape[0]):
        for t in range(tptr.shape[1] - 1):
            most = max(most, tptr[b, t + 1] - tptr[b, t])
    return most
