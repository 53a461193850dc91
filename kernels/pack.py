"""Output buffers of a batch packed in place.

A layer kernel writes each sample's spikes into its own row of an int32
buffer ``[B, cap]`` (``cap``: a guess of the busiest sample's spikes);
:func:`pack_rows` moves them together so that the rows are ``[B, used]``
in the buffer's own memory, without a copy in new memory."""

from ._jit import jit


@jit
def pack_rows(out_idx, spikes, used):
    """Row ``b``'s first ``spikes[b]`` (int64, each <= ``used`` < ``cap``)
    entries of ``out_idx`` (int32 ``[B, cap]``, C-contiguous, mutated) moved
    to flat positions ``b * used ...``, rows in order; the rest of each row
    is left as it is. A row lands ``b * (cap - used)`` entries before where
    it was, past the rows already placed; it is copied in pieces of at most
    that length, so no piece overlaps what it is copied from (a plain copy
    loop, which vectorises)."""
    cap = out_idx.shape[1]
    flat = out_idx.reshape(-1)
    for b in range(1, out_idx.shape[0]):
        src = b * cap
        dst = b * used
        n = spikes[b]
        for k0 in range(0, n, src - dst):
            m = min(src - dst, n - k0)
            to = flat[dst + k0 : dst + k0 + m]  # views: the loop below vectorises
            frm = flat[src + k0 : src + k0 + m]
            for k in range(m):
                to[k] = frm[k]
