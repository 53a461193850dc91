"""Layers: a projection (weights) onto a population of neurons.

A layer owns its connectivity, the bias of its neurons, their model and
their initial membrane. Connectivity is stored the way the kernels read it:
by presynaptic neuron (dense rows ``[n_in, n_out]``, or CSR).
"""

from __future__ import annotations

import numpy as np

from .._validate import KeepsReadOnly, checked_csr, owned, positive_int, real_array
from . import connectivity
from .neurons import LIF, Neuron

MODES = ("auto", "event", "clock", "dense")


class Layer(KeepsReadOnly):
    """Common part of every layer: neurons, bias, initial membrane, mode.

    Parameters
    ----------
    n_in, n_out : sizes of the input and of the population.
    neuron : the population's model (default ``LIF(beta=0.9)``).
    bias : ``[n_out]`` or scalar, potential added every step (default 0).
    v_init : ``[n_out]`` or scalar, membrane before step 0 (default 0).
    mode : how the layer runs. ``"event"``: synaptic input delivered per
        spike, only the neurons it reaches are updated (lazy leak);
        ``"clock"``: input delivered per spike, every neuron updated at
        every step by a sequential sweep (cheaper once most neurons are
        touched at every step); ``"dense"``: the input of all steps as one
        BLAS product, neurons clock-driven; ``"auto"`` (default): the
        cheapest of the three for each run, from the measured input
        activity and a cost model. All compute the same dynamics (sums
        may round differently).
    """

    kind = "layer"
    _edits = 0  # attributes assigned so far (see __setattr__)

    def __setattr__(self, name, value):
        # every assignment is counted, so that a network sees that a layer changed without comparing
        # its attributes (snn.Network.graph); arrays are read-only, so assigning is the only change
        object.__setattr__(self, name, value)
        object.__setattr__(self, "_edits", self._edits + 1)

    def __init__(
        self,
        n_in: int,
        n_out: int,
        neuron: Neuron | None = None,
        bias=0.0,
        v_init=0.0,
        mode: str = "auto",
        name: str | None = None,
    ):
        n_in, n_out = positive_int("n_in", n_in), positive_int("n_out", n_out)
        if neuron is None:
            neuron = LIF(beta=0.9)
        if not isinstance(neuron, Neuron):
            raise TypeError(f"neuron must be a snn.Neuron (IF, LIF, CubaLIF), got {type(neuron).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.neuron = neuron
        self.bias = self._per_neuron("bias", bias)
        self.v_init = self._per_neuron("v_init", v_init)
        self.mode = mode
        self.name = name

    @property
    def bias(self) -> np.ndarray:
        """``[n_out]`` float64, read-only; assign a new value to change it
        (checked like the constructor's)."""
        return self._bias

    @bias.setter
    def bias(self, value):
        self._bias = owned(self._per_neuron("bias", value))
        self._bias_rows = {}

    @property
    def v_init(self) -> np.ndarray:
        """``[n_out]`` float64, read-only; assign a new value to change it
        (checked like the constructor's)."""
        return self._v_init

    @v_init.setter
    def v_init(self, value):
        self._v_init = owned(self._per_neuron("v_init", value))
        self._v_init_rows = {}

    def v_init_row(self, dtype) -> np.ndarray:
        """The initial membrane as the kernels take it, ``[n_out]`` of the
        state ``dtype`` (writeable, never written: numba compiles read-only
        arrays as another type); refused if ``dtype`` cannot hold it.
        Prepared once per dtype."""
        key = np.dtype(dtype)
        if key not in self._v_init_rows:
            name = f"v_init of {self.name or type(self).__name__}"
            self._v_init_rows[key] = real_array(name, self._v_init, key).copy()
        return self._v_init_rows[key]

    def bias_row(self, dtype) -> tuple[np.ndarray, bool]:
        """The bias as the kernels take it, ``[1, n_out]`` of ``dtype`` or
        ``[1, 1]`` if shared by all neurons, and whether any is positive
        (then neurons can fire on their own); prepared once per dtype."""
        key = np.dtype(dtype)
        if key not in self._bias_rows:
            # a writeable copy: numba compiles read-only arrays as another type
            row = real_array(f"bias of {self.name or type(self).__name__}", self._bias, key)[None, :].copy()
            if np.all(row == row[0, 0]):  # shared: one value, no per-neuron reads
                row = np.ascontiguousarray(row[:, :1])
            self._bias_rows[key] = (row, bool(np.any(self._bias > 0)))
        return self._bias_rows[key]

    def _per_neuron(self, label, value):
        arr = real_array(label, value)
        if arr.ndim == 0:
            return np.full(self.n_out, float(arr))
        if arr.shape != (self.n_out,):
            raise ValueError(f"{label} must be a scalar or have shape ({self.n_out},), got {arr.shape}")
        return arr.copy()

    @property
    def n_synapses(self) -> int:
        return int(self.fan_out.sum())

    def dense_rows(self, dtype=np.float32) -> np.ndarray:
        """The projection as a dense ``[n_in, n_out]`` matrix of ``dtype``
        (float32 values), for the dense fallback and the reference backend;
        built once per dtype, read-only."""
        cache = self.__dict__.setdefault("_rows", {})
        key = np.dtype(dtype)
        if key not in cache:
            rows = self._dense_rows(key)
            rows.flags.writeable = False
            cache[key] = rows
        return cache[key]

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.n_in} -> {self.n_out}, {self.neuron!r}, "
            f"synapses={self.n_synapses:,}, mode={self.mode!r})"
        )


class Linear(Layer):
    """Fully connected layer.

    ``weight`` is ``[n_out, n_in]`` (the layout of ``torch.nn.Linear.weight``);
    it is stored transposed, as float32 rows of targets per input neuron.
    If omitted, weights are drawn like torch's default init,
    uniform in ``±1/sqrt(n_in)``, from ``seed``.
    """

    kind = "dense"

    def __init__(
        self,
        n_in: int,
        n_out: int,
        neuron: Neuron | None = None,
        *,
        weight=None,
        bias=0.0,
        v_init=0.0,
        mode: str = "auto",
        seed: int | None = None,
        name: str | None = None,
    ):
        super().__init__(n_in, n_out, neuron, bias, v_init, mode, name)
        if weight is None:
            bound = 1.0 / np.sqrt(n_in)
            weight = np.random.default_rng(seed).uniform(-bound, bound, (n_out, n_in))
        w = real_array("weight", weight, np.float32, ndim=2)
        if w.shape != (self.n_out, self.n_in):
            raise ValueError(
                f"weight must have shape (n_out, n_in) = ({self.n_out}, {self.n_in}), got {w.shape}"
            )
        self.weight_rows = owned(w.T)  # [n_in, n_out], our own copy
        self.fan_out = np.full(self.n_in, self.n_out, np.int64)

    @property
    def weight(self) -> np.ndarray:
        """``[n_out, n_in]`` float32 (a copy, torch layout)."""
        return self.weight_rows.T.copy()

    def _dense_rows(self, dtype) -> np.ndarray:
        return self.weight_rows.astype(dtype)


class SparseLinear(Layer):
    """Sparsely connected layer, stored as CSR by presynaptic neuron
    (int32 targets, float32 weights, int64 row offsets).

    Build it from a dense ``[n_out, n_in]`` matrix (zeros are absent synapses)
    with :meth:`from_dense`, from COO triples with :meth:`from_coo`, or
    randomly with :meth:`random` (fixed probability) or :meth:`fixed_in_degree`.
    """

    kind = "csr"

    def __init__(
        self,
        n_in: int,
        n_out: int,
        neuron: Neuron | None = None,
        *,
        rowptr,
        cols,
        weights,
        bias=0.0,
        v_init=0.0,
        mode: str = "auto",
        name: str | None = None,
    ):
        super().__init__(n_in, n_out, neuron, bias, v_init, mode, name)
        self.rowptr, self.cols = checked_csr(rowptr, cols, self.n_in, self.n_out)
        weights = real_array("weights", weights, np.float32, ndim=1)
        if weights.shape != self.cols.shape:
            raise ValueError(
                f"weights must have one value per synapse ({len(self.cols)}), got {weights.shape}"
            )
        self.weights = owned(weights)  # derived data (dense_rows) is cached: never changed
        self.fan_out = np.diff(self.rowptr)

    @classmethod
    def from_coo(cls, n_in, n_out, pre, post, weights, neuron=None, **kwargs) -> SparseLinear:
        """From synapses ``pre[k] -> post[k]`` with ``weights[k]`` (any order)."""
        n_in, n_out = positive_int("n_in", n_in), positive_int("n_out", n_out)
        pre = np.asarray(pre)
        post = np.asarray(post)
        if pre.dtype.kind not in "iu" or post.dtype.kind not in "iu":
            raise TypeError(f"pre and post must be integer arrays, got {pre.dtype} and {post.dtype}")
        if pre.shape != post.shape or pre.ndim != 1:
            raise ValueError(f"pre and post must be 1-D of equal length, got {pre.shape} and {post.shape}")
        if len(pre) and (pre.min() < 0 or pre.max() >= n_in):
            raise ValueError(f"pre must index sources in [0, {n_in}), got [{pre.min()}, {pre.max()}]")
        weights = real_array("weights", weights, np.float32, ndim=1)
        if weights.shape != pre.shape:
            raise ValueError(f"weights must have one entry per synapse ({len(pre)}), got {weights.shape}")
        order = np.lexsort((post, pre))
        rowptr = np.zeros(n_in + 1, np.int64)
        np.cumsum(np.bincount(pre, minlength=n_in), out=rowptr[1:])
        return cls(n_in, n_out, neuron, rowptr=rowptr, cols=post[order], weights=weights[order], **kwargs)

    @classmethod
    def from_dense(cls, weight, neuron=None, **kwargs) -> SparseLinear:
        """From a dense ``[n_out, n_in]`` matrix; zero entries are not synapses."""
        w = real_array("weight", weight, np.float32, ndim=2)
        post, pre = np.nonzero(w)
        return cls.from_coo(w.shape[1], w.shape[0], pre, post, w[post, pre], neuron, **kwargs)

    @classmethod
    def random(cls, n_in, n_out, p, weight=1.0, neuron=None, seed=None, **kwargs) -> SparseLinear:
        """Each of the ``n_in * n_out`` pairs connected independently with
        probability ``p`` (:func:`snn.model.connectivity.fixed_probability`);
        ``weight`` a scalar or a callable ``(rng, n) -> [n]`` drawing the
        ``n`` weights, in CSR order, from the same generator."""
        rng = np.random.default_rng(seed)
        rowptr, cols = connectivity.fixed_probability(n_in, n_out, p, rng)
        return cls._with_weights(n_in, n_out, rowptr, cols, weight, rng, neuron, **kwargs)

    @classmethod
    def fixed_in_degree(cls, n_in, n_out, k, weight=1.0, neuron=None, seed=None, **kwargs) -> SparseLinear:
        """Every output neuron receives exactly ``k`` distinct inputs, chosen
        uniformly (:func:`snn.model.connectivity.fixed_in_degree`); ``weight`` as in
        :meth:`random`."""
        rng = np.random.default_rng(seed)
        rowptr, cols = connectivity.fixed_in_degree(n_in, n_out, k, rng)
        return cls._with_weights(n_in, n_out, rowptr, cols, weight, rng, neuron, **kwargs)

    @classmethod
    def _with_weights(cls, n_in, n_out, rowptr, cols, weight, rng, neuron, **kwargs) -> SparseLinear:
        n = len(cols)
        w = weight(rng, n) if callable(weight) else np.full(n, weight)
        return cls(n_in, n_out, neuron, rowptr=rowptr, cols=cols, weights=w, **kwargs)

    def _dense_rows(self, dtype) -> np.ndarray:
        return csr_dense_rows(self.rowptr, self.cols, self.weights, self.n_out, dtype)


def csr_dense_rows(rowptr, cols, weights, n_out: int, dtype) -> np.ndarray:
    """CSR synapses by presynaptic neuron as a dense ``[n_in, n_out]`` matrix
    of ``dtype``; repeated synapses (the same pair twice) are summed in
    ``dtype``, as the event path sums them into the state."""
    n_in = len(rowptr) - 1
    rows = np.zeros((n_in, n_out), dtype)
    np.add.at(rows, (np.repeat(np.arange(n_in), np.diff(rowptr)), cols), weights.astype(dtype))
    return rows
