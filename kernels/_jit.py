"""The one place that decides how kernels are compiled.

Every kernel module uses :func:`jit` (serial), :func:`helper` (a piece of
one) or :func:`pjit` (parallel over samples) instead of calling
``numba.njit`` itself, so the compilation policy is uniform and reviewable:

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
  remove it. A helper that allocates fails to compile, loudly. (numba's own
  IR inlining, ``inline="always"``, also made a layer kernel take 45 s to
  compile instead of 1 s: it deep-copies the callee's IR at every call site.)
- ``boundscheck``: off, unless the environment sets ``NUMBA_BOUNDSCHECK=1``
  (numba reads it itself; tests have a leg that does).
- ``NUMBA_DISABLE_JIT=1``: kernels and helpers run as Python, each kernel
  call under ``numpy.errstate(over="ignore")`` (:func:`python_twin`):
  compiled code wraps integers and overflows floats to inf silently (the
  generator's xoshiro arithmetic wraps by design), and so does its Python
  twin. Helpers, called millions of times, inherit the rule from their
  kernel (the context costs 2 us a call); one that Python calls directly
  and that overflows by design wraps itself (``rng.next_u64``).

Compile-time choices
--------------------
A flag passed to a kernel or helper as a constant is a compile-time choice:
a call from compiled code with a constant argument (``has_current=False``)
compiles a specialisation whose argument type is that literal value, and the
pass :class:`LiteralArgsAsConstants` (added to every kernel's pipeline) turns
such an argument into a constant inside the function, so that numba's
dead-branch pruning removes the code it rules out before typing, and hands
the constant on to the helpers it calls. The neuron step (``kernels.neuron``)
is written once with its flags as arguments; a plain IF/LIF layer's kernel
compiles none of its synaptic-current or refractory code.

A layer kernel is written once, inside a factory whose arguments are its
choices (projection kind, path, the neuron model's flags, the reset);
:func:`specialise` caches the factory, so each combination a network uses is
compiled once, or loaded from the cache (numba keys a closure's cache entry
by the values it closes over: plain ints and bools here). The kernel sees
the choices as constants, which prune like literal arguments: a dense
network compiles no convolution, an event-driven run no clock sweep.
A kernel runs a range of samples, and the samples of a batch run in chunks
on threads over the same compiled kernel (:func:`run_samples`), so a batch
compiles nothing more than one sample.
"""

import functools
import hashlib
import inspect
import os
import threading
import types as types_
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import llvmlite.binding as ll
import numba
import numpy as np
from numba.core import ir, ir_utils, sigutils, types
from numba.core.caching import FunctionCache
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import FunctionPass, register_pass
from numba.core.registry import CPUDispatcher
from numba.core.runtime import rtsys
from numba.core.untyped_passes import DeadBranchPrune, IRProcessing


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


@register_pass(mutates_CFG=True, analysis_only=False)
class LiteralArgsAsConstants(FunctionPass):
    """Arguments typed as a literal bool or int (a compile-time choice given
    as a constant at the call site) become constants in the function's IR,
    before numba's dead-branch pruning runs (see the module docstring)."""

    _name = "snn_literal_args_as_constants"

    def __init__(self):
        FunctionPass.__init__(self)

    def run_pass(self, state):
        changed = False
        for block in state.func_ir.blocks.values():
            for stmt in block.body:
                if isinstance(stmt, ir.Assign) and isinstance(stmt.value, ir.Arg):
                    arg_type = state.args[stmt.value.index]
                    if isinstance(arg_type, (types.BooleanLiteral, types.IntegerLiteral)):
                        stmt.value = ir.Const(arg_type.literal_value, stmt.value.loc)
                        changed = True
        if changed:
            state.func_ir._definitions = ir_utils.build_definitions(state.func_ir.blocks)
        return changed


class _Compiler(CompilerBase):
    """numba's nopython pipeline with :class:`LiteralArgsAsConstants`, then
    a dead-branch pruning at once: the code a kernel's compile-time choices
    rule out (a factory's closure variables, literal arguments) goes before
    numba's closure inlining and rewrites walk it (numba prunes only after
    them; README network, cold ``prepare()``: closure inlining 0.66 ->
    0.20 s)."""

    def define_pipelines(self):
        pm = DefaultPassBuilder.define_nopython_pipeline(self.state)
        pm.add_pass_after(LiteralArgsAsConstants, IRProcessing)
        pm.add_pass_after(DeadBranchPrune, LiteralArgsAsConstants)
        pm.finalize()
        return [pm]


def _plain(arg_type):
    """The type a non-choice argument is compiled for: constants as their
    plain type, signed integer scalars as int64."""
    arg_type = types.unliteral(arg_type)
    if isinstance(arg_type, types.Integer) and arg_type.signed and arg_type.bitwidth < 64:
        return types.int64
    return arg_type


def _resolvable(libdata, codegen) -> bool:
    """True if every symbol the cached code ``libdata`` declares (calls
    without defining) is known to the JIT linker already: numba's runtime
    and C helpers, the process's libraries, code compiled or loaded before.
    An unknown one would abort the process when the code is loaded."""
    name, kind, data = libdata
    engine = getattr(codegen, "_engine", None)  # numba's JIT engine (private: absent means unknown)
    if kind != "object" or engine is None:
        return False
    module = ll.parse_bitcode(data[1])
    return all(
        not g.is_declaration
        or g.name.startswith("llvm.")
        or engine.is_symbol_defined(g.name)
        or ll.address_of_symbol(g.name) is not None
        for g in (*module.functions, *module.global_variables)
    )


class _CheckedCache(FunctionCache):
    """numba's on-disk cache, refusing an entry compiled for another
    signature, and loading without numba's refresh of the compiler.

    numba's index is not safe against processes adding entries for
    different signatures of one function at the same time (two may pick the
    same data file, and the index then points to the other's code); such an
    entry is compiled again (and its file rewritten) instead of being run on
    arguments it was not compiled for.

    numba refreshes the target context before every load (the first time
    in a process: imports and installs every implementation registry it
    has, 0.4-0.5 s here, most of a cached ``Network.prepare()``). Loading
    needs only the runtime (NRT) the compiled code calls; compiling refreshes
    by itself. An entry whose code declares a symbol not known yet gets the
    full refresh first (:func:`_resolvable`).

    The load without refresh reads numba's private cache internals
    (:data:`_PRIVATE`, stable from numba 0.60 to 0.68); where a numba
    release lacks one of them, numba's own load (refresh included) runs,
    slower but correct."""

    _PRIVATE = ("_enabled", "_cache_file", "_impl", "_index_key", "_guard_against_spurious_io_errors")

    def __init__(self, py_func):
        super().__init__(py_func)
        self._fast = all(hasattr(self, name) for name in self._PRIVATE)

    def load_overload(self, sig, target_context):
        cres = self._load(sig, target_context)
        if cres is None and getattr(_probing, "active", False):
            raise _WouldCompile  # (a probe of precompile: nothing compiled)
        return cres

    def _load(self, sig, target_context):
        if self._fast:
            cres = self._load_without_refresh(sig, target_context)
        else:  # numba's own load
            cres = super().load_overload(sig, target_context)
        if cres is not None and tuple(cres.signature.args) != tuple(sigutils.normalize_signature(sig)[0]):
            return None
        return cres

    def _load_without_refresh(self, sig, target_context):
        if not self._enabled:
            return None
        rtsys.initialize(target_context)  # what numba's refresh does first
        with self._guard_against_spurious_io_errors():
            data = self._cache_file.load(self._index_key(sig, target_context.codegen()))
            if data is None:
                return None
            if not _resolvable(data[0], target_context.codegen()):
                target_context.refresh()
            return self._impl.rebuild(target_context, data)
        return None  # an I/O error swallowed (Windows only)


class _Dispatcher(CPUDispatcher):
    """numba's dispatcher, except for calls from compiled code: a constant
    argument compiles a specialisation only where the parameter is one of
    the function's compile-time ``choices``; any other constant (a counter
    starting at 0, step -1) is typed as its plain type, and a signed integer
    narrower than 64 bits (a neuron index read from an int32 array) as
    int64, so neither costs another copy of the function."""

    choices = ()  # names of the compile-time parameters
    _positions = frozenset()  # and their positions

    def get_call_template(self, args, kws):
        args = tuple(a if k in self._positions else _plain(a) for k, a in enumerate(args))
        kws = {k: v if k in self.choices else _plain(v) for k, v in kws.items()}
        return super().get_call_template(args, kws)

    def enable_caching(self):
        self._cache = _CheckedCache(self.py_func)


class _HelperDispatcher(_Dispatcher):
    """A helper is called by kernels only, so it is compiled without the
    wrapper that makes a function callable from Python (measured here: the
    README network's kernels compiled in 6.4 s instead of 7.4 s). A call
    from Python (the tests call helpers directly) goes to a twin that has
    it, cached under a name of its own so that the two never load each
    other's code."""

    def __call__(self, *args, **kws):
        return self._from_python(*args, **kws)


# no_cfunc_wrapper: kernels are called from Python or from kernels, never through a C pointer
_OPTIONS = dict(
    nopython=True, boundscheck=None, fastmath=False, error_model="numpy", nogil=True, no_cfunc_wrapper=True
)
_NO_WRAPPERS = dict(no_cpython_wrapper=True)


def python_twin(fn):
    """``fn`` run as Python under compiled code's overflow rule: silent."""

    @functools.wraps(fn)
    def silent(*args, **kwargs):
        with np.errstate(over="ignore"):
            return fn(*args, **kwargs)

    return silent


def _compile(fn, choices=(), cls=_Dispatcher, **options):
    if numba.config.DISABLE_JIT:
        return fn if cls is _HelperDispatcher else python_twin(fn)
    params = list(inspect.signature(fn).parameters)
    unknown = set(choices) - set(params)
    if unknown:
        raise TypeError(f"{fn.__qualname__} has no parameter(s) {sorted(unknown)}")
    disp = cls(py_func=fn, locals={}, targetoptions={**_OPTIONS, **options}, pipeline_class=_Compiler)
    disp.choices = tuple(choices)
    disp._positions = frozenset(params.index(name) for name in choices)
    disp.enable_caching()
    return disp


def jit(fn=None, *, choices=()):
    """Compile ``fn`` as a serial kernel (or a helper of one that
    allocates); ``choices``: names of its compile-time parameters (module
    docstring). Use as ``@jit`` or ``@jit(choices=(...))``."""
    if fn is None:
        return functools.partial(jit, choices=choices)
    return _compile(fn, choices)


def helper(fn=None, *, choices=()):
    """Compile ``fn`` as a non-allocating helper of kernels (no runtime, no
    reference counting on its array arguments, no Python wrappers: see
    :class:`_HelperDispatcher`); ``choices`` as in :func:`jit`."""
    if fn is None:
        return functools.partial(helper, choices=choices)
    disp = _compile(fn, choices, _HelperDispatcher, _nrt=False, **_NO_WRAPPERS)
    if not numba.config.DISABLE_JIT:
        twin = types_.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        twin.__qualname__ = f"{fn.__qualname__}_from_python"  # its own cache file
        twin.__doc__ = fn.__doc__
        disp._from_python = _compile(twin, choices, _nrt=False)
    return disp


def pjit(fn):
    """Compile ``fn`` as a kernel whose ``numba.prange`` loops run on all cores."""
    return _compile(fn, parallel=True)


prange = numba.prange


def specialise(factory):
    """Cache a kernel factory: ``factory(*choices)`` (plain ints and bools)
    returns the Python function of the kernel specialised to those
    compile-time choices, compiled here once per process (numba compiles it
    on its first call, or loads it from the cache). Each specialisation is
    cached on disk under a name of its own (the function's name and the
    choices), as a function of its own would be."""

    @functools.cache
    def build(*choices):
        fn = factory(*choices)
        fn.__qualname__ = f"{fn.__qualname__}_{'_'.join(str(int(c)) for c in choices)}"
        return jit(fn)

    return functools.update_wrapper(build, factory)


def run_batch(parallel_kernel, sample_kernel, *args, batched=()):
    """Run a batch kernel, or for a single sample its per-sample kernel
    directly: a parallel region for one sample only costs thread wake-ups.
    ``batched`` lists the positions of the per-sample arguments (their first
    axis is the sample)."""
    if args[batched[0]].shape[0] != 1:
        return parallel_kernel(*args)
    return sample_kernel(*[a[0] if k in batched else a for k, a in enumerate(args)])


_pool = None  # (pid, ThreadPoolExecutor): workers of run_samples, made on first use


def _workers():
    global _pool
    if _pool is None or _pool[0] != os.getpid():  # none yet, or inherited by a forked child
        _pool = (os.getpid(), ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1), "snn-kernels"))
    return _pool[1]


def run_samples(kernel, n_samples, *args):
    """Run ``kernel(*args, first, stop)`` over the samples ``0 ..
    n_samples`` in chunks, on ``numba.get_num_threads()`` threads (the
    caller's included) that take the next chunk as they finish one. A
    kernel loops over the samples of its chunk itself (a call from Python
    costs about as much as a small sample) and releases the GIL, so the
    chunks run in parallel without a parallel kernel of their own to
    compile."""
    # one sample: no thread count to ask numba for (its get_num_threads takes a lock: ~2 us)
    threads = 1 if n_samples <= 1 else min(numba.get_num_threads(), n_samples)
    if threads <= 1:
        kernel(*args, 0, n_samples)
        return
    chunk = max(1, n_samples // (4 * threads))  # a few chunks per thread: samples differ in cost
    starts = iter(range(0, n_samples, chunk))  # next() is atomic under the GIL

    def work():
        for first in starts:
            kernel(*args, first, min(first + chunk, n_samples))

    helpers = [_workers().submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for done in helpers:
            done.result()


def _can_fork_compile() -> bool:
    """True if a forked process can compile kernels into the on-disk cache
    for this one: the JIT on, two cores or more, ``os.fork``, no other
    Python thread (a lock one holds at the fork would stay held in the
    child), and a writable cache directory (that of the kernels' sources,
    or ``NUMBA_CACHE_DIR``)."""
    if numba.config.DISABLE_JIT or not hasattr(os, "fork") or threading.active_count() != 1:
        return False
    if os.environ.get("SNN_FORK_COMPILE", "1") == "0":
        return False
    try:
        if len(os.sched_getaffinity(0)) < 2:
            return False
        cache = _CheckedCache(_can_fork_compile)  # located as every kernel's cache is
        return bool(cache._enabled) and os.access(cache._cache_path, os.W_OK)
    except Exception:  # no cache location, or numba's internals changed: compile here
        return False


class _WouldCompile(BaseException):
    """Raised by a cache miss while :func:`precompile` probes a job (a
    ``BaseException``, so that no ``except Exception`` of a caller takes it
    for an error of its own)."""


_probing = threading.local()  # .active: this thread's cache misses raise _WouldCompile


def _loads(job) -> bool:
    """Run ``job`` as far as its kernels are in memory or in the on-disk
    cache; False at the first it would compile (nothing compiled)."""
    _probing.active = True
    try:
        job()
        return True
    except _WouldCompile:
        return False
    finally:
        _probing.active = False


def precompile(jobs) -> int:
    """Warm the kernel cache with two processes: ``jobs`` (callables, each
    compiling some kernels by calling them; independent, the costliest
    first) that load what they need from the cache are run here, and those
    that would compile are shared between this process and a forked child,
    each taking the next job not taken yet (this process the first, so that
    which process compiles which of the first two does not depend on which
    is scheduled first); the child's kernels are written
    to the on-disk cache (``cache=True``), from which this process loads
    them when it calls them next. A cache warmer only: the caller then runs
    what it needs as it would without it (loading, or compiling what the
    child did not leave), so results never depend on it. Without a fork
    (:func:`_can_fork_compile`), or for fewer than two jobs to compile, it
    does nothing more. Returns the number of jobs the child took."""
    if not _can_fork_compile():
        return 0
    jobs = [job for job in jobs if not _loads(job)]
    if len(jobs) < 2:
        return 0
    read, write = os.pipe()  # the job queue: one 4-byte index per job; a read takes one
    os.write(write, b"".join(k.to_bytes(4, "little") for k in range(len(jobs))))
    os.close(write)
    mine = os.read(read, 4)  # the first (costliest) job is this process's: it starts before the child can
    done = os.pipe()  # the child reports how many it took
    pid = os.fork()
    if pid == 0:  # the child: take jobs until none is left, then leave (no clean-up of the parent's)
        code = 1
        try:
            os.close(done[0])
            taken = 0
            while len(k := os.read(read, 4)) == 4:
                jobs[int.from_bytes(k, "little")]()
                taken += 1
            os.write(done[1], taken.to_bytes(4, "little"))
            code = 0
        finally:
            os._exit(code)
    os.close(done[1])
    try:
        while len(mine) == 4:
            jobs[int.from_bytes(mine, "little")]()
            mine = os.read(read, 4)
    except BaseException:
        os.kill(pid, 15)  # SIGTERM: what it compiled is not wanted any more
        raise
    finally:
        os.close(read)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # reaped already (SIGCHLD ignored): its report says if it finished
            pass
        reply = os.read(done[0], 4)
        os.close(done[0])
    return int.from_bytes(reply, "little") if len(reply) == 4 else 0
