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
- helpers (:func:`helper`): functions called from kernels that take arrays
  but allocate nothing are compiled without the Numba runtime (``_nrt=False``).
  With it, every call increments and decrements the reference count of each
  array argument atomically; measured here, a helper taking four arrays cost
  70 ns per call with it and 1.5 ns without, and ``inline="always"`` did not
  remove it. A helper that allocates fails to compile, loudly.
- ``boundscheck``: off, unless the environment sets ``NUMBA_BOUNDSCHECK=1``
  (numba reads it itself; tests have a leg that does).
"""

import hashlib
from pathlib import Path

import numba


def _drop_stale_cache():
    """Numba checks a cached kernel against its own source file only, not
    against the helpers it inlined from other files; so when any kernel
    source changes, drop every cached kernel of this package (compiled again
    on first use). A read-only install is left alone (numba then caches
    elsewhere, keyed by the installed files, which change together)."""
    here = Path(__file__).parent
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(here.glob("*.py")))).hexdigest()
    cache = here / "__pycache__"
    stamp = cache / "kernel-sources.sha256"
    if stamp.is_file() and stamp.read_text() == digest:
        return
    try:
        cache.mkdir(exist_ok=True)
        for stale in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            stale.unlink(missing_ok=True)
        stamp.write_text(digest)
    except OSError:
        pass


_drop_stale_cache()

_OPTIONS = dict(cache=True, fastmath=False, error_model="numpy", nogil=True)


def jit(fn):
    """Compile ``fn`` as a serial kernel (or an inlined helper of one)."""
    return numba.njit(**_OPTIONS)(fn)


def helper(fn):
    """Compile ``fn`` as a non-allocating helper of kernels (no runtime, no
    reference counting on its array arguments)."""
    return numba.njit(_nrt=False, **_OPTIONS)(fn)


def pjit(fn):
    """Compile ``fn`` as a kernel whose ``numba.prange`` loops run on all cores."""
    return numba.njit(parallel=True, **_OPTIONS)(fn)


prange = numba.prange


def run_batch(parallel_kernel, sample_kernel, *args, batched=()):
    """Run a batch kernel, or for a single sample its per-sample kernel
    directly: a parallel region for one sample only costs thread wake-ups.
    ``batched`` lists the positions of the per-sample arguments (their first
    axis is the sample)."""
    if args[batched[0]].shape[0] != 1:
        return parallel_kernel(*args)
    return sample_kernel(*[a[0] if k in batched else a for k, a in enumerate(args)])
