"""The one place that decides how kernels are compiled.

Every kernel module uses :func:`jit` (serial) or :func:`pjit` (parallel over
samples) instead of calling ``numba.njit`` itself, so the compilation policy is
uniform and reviewable:

- ``cache=True``: compiled machine code is stored next to the sources, so a new
  process loads it instead of compiling again.
- ``fastmath=False``: the event-driven and clock-driven backends must round the
  same way; reassociation would break the equivalence tests.
- ``error_model="numpy"``: division by zero gives inf/nan like numpy instead of
  raising, which lets LLVM vectorise the inner loops.
- ``boundscheck``: off, unless the environment sets ``NUMBA_BOUNDSCHECK=1``
  (numba reads it itself; tests have a leg that does).
"""

import numba

_OPTIONS = dict(cache=True, fastmath=False, error_model="numpy", nogil=True)


def jit(fn):
    """Compile ``fn`` as a serial kernel (or an inlined helper of one)."""
    return numba.njit(**_OPTIONS)(fn)


def pjit(fn):
    """Compile ``fn`` as a kernel whose ``numba.prange`` loops run on all cores."""
    return numba.njit(parallel=True, **_OPTIONS)(fn)


prange = numba.prange
