"""A stack's run advanced chunk by chunk (:meth:`snn.Network.start`): the
:class:`~snn.run.schedule.Simulation` of the stack's graph seen in the
stack's terms (layers by index or name, the stack's input forms, results
without the input population)."""

from __future__ import annotations

import numpy as np

from .result import RunResult
from .schedule import Simulation
from .spiketrains import SpikeTrains


class StackSimulation:
    """A run of a :class:`snn.Network` to advance chunk by chunk, its state
    carried: cut anywhere, it computes what :meth:`snn.Network.run`
    computes. Made by :meth:`snn.Network.start`. Layers are addressed by
    index or name (:meth:`snn.Network.layer_name`).

    ``analog`` streams: the first layer's drive is ``analog @ W`` (a
    constant analog input multiplied once, as ``run`` does), changed by
    ``advance(analog=...)``; each change is counted as MACs (``counts[0]``
    of the result, as in a run given ``analog``)."""

    def __init__(self, net, sim: Simulation, analog: bool, macs):
        self.net, self.sim = net, sim
        self._analog = analog  # the input is analog (a drive), its spikes empty
        self._macs = macs  # [B] int64 MACs of the analog input so far, or None
        graph = sim.graph
        self._input = graph.populations[0].name
        self._first = net.layer_name(0)

    def __repr__(self):
        end = "no end" if self.n_steps is None else f"of {self.n_steps}"
        return f"StackSimulation(step {self.t} {end}, batch {self.batch}, {len(self.net.layers)} layers)"

    @property
    def t(self) -> int:
        """Steps done."""
        return self.sim.t

    @property
    def n_steps(self) -> int | None:
        """The run's steps (None: a stream without end)."""
        return self.sim.n_steps

    @property
    def batch(self) -> int:
        return self.sim.batch

    @property
    def seconds(self) -> float:
        """Wall time spent in :meth:`advance`, all chunks."""
        return self.sim.seconds

    def advance(self, steps: int | None = None, *, spikes=None, analog=None, bar=None) -> StackSimulation:
        """Run ``steps`` more steps (default: to the end); returns ``self``.
        ``spikes``: this chunk's input (:class:`SpikeTrains` or a raster
        ``[steps, B, n_in]``) when the run was started without one;
        ``analog``: a new constant analog input ``[B, n_in]`` from this
        chunk's first step on (runs started with ``analog=``)."""
        inputs, drive = None, None
        if self.sim.fed and self._analog:  # the input population's spikes: none, for the steps asked
            if spikes is not None:
                raise ValueError("this run's input is analog: give analog=, not spikes=")
            if steps is None and self.n_steps is None:
                raise ValueError("a stream has no end: give the number of steps")
            if steps is None:
                steps = self.n_steps - self.t
            if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
                raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
            inputs = {self._input: SpikeTrains.empty(int(steps), self.batch, self.net.n_in)}
        elif self.sim.fed:
            if spikes is None:
                raise ValueError("this run is fed chunk by chunk: give advance(steps, spikes=...)")
            inputs = {self._input: spikes}
        elif spikes is not None:
            raise ValueError("this run's input was given to start(): advance() takes no spikes")
        if analog is not None:
            if not self._analog:
                raise ValueError("analog= changes the input of a run started with analog=")
            x = self.net._analog_input(analog)
            if x.ndim != 2:
                raise ValueError(f"advance() takes a constant analog input [B, n_in], got shape {x.shape}")
            if x.shape[0] != self.batch:
                raise ValueError(f"analog has {x.shape[0]} samples but the run has {self.batch}")
            current, macs = self.net._analog_drive(x)
            drive = {self._first: current}
        self.sim.advance(steps, inputs=inputs, drive=drive, bar=bar)
        if drive is not None:
            self._macs = self._macs + macs
        return self

    def result(self) -> RunResult:
        """Spikes, counts and recordings of the steps done, as
        :meth:`snn.Network.run` returns them for a run of :attr:`t` steps
        (a run keeping every spike: ``history`` None)."""
        macs = None if self._macs is None else {self._first: self._macs}
        return self.sim._result(False, macs, stack=True)

    def keep(self, rows) -> StackSimulation:
        """Go on with the samples ``rows`` of the batch only (see
        :meth:`snn.run.schedule.Simulation.keep`)."""
        self.sim.keep(rows)
        if self._macs is not None:
            self._macs = self._macs[np.asarray(rows, np.int64)]
        return self

    def membrane(self, layer) -> np.ndarray:
        """``[B, n]``: the membrane of ``layer`` at the end of the last step done."""
        return self.sim.membrane(self._name(layer))

    def spike_counts(self, layer) -> np.ndarray:
        """``[B, n]`` int64: spikes per neuron of ``layer`` (named in ``count_spikes``)."""
        return self.sim.spike_counts(self._name(layer))

    def recorded(self, layer, var: str = "v") -> np.ndarray:
        """``[steps, B, R]``: the recorded ``var`` (``"v"`` or ``"i"``) of ``layer``."""
        return self.sim.recorded(self._name(layer), var)

    def window(self, layer, a: int, b: int) -> SpikeTrains:
        """Spikes of ``layer`` in steps ``a .. b - 1`` (within the ``history`` kept)."""
        return self.sim.window(self._name(layer), a, b)

    def totals(self) -> dict:
        """Counts so far by layer name, ``[B, 4]`` int64 each (see
        :meth:`snn.run.schedule.Simulation.totals`)."""
        return self.sim.totals()

    def _name(self, layer) -> str:
        return self.net._layer_key(layer)
