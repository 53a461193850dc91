"""Energy estimate from exact operation counts: ``E = n_AC * e_AC + n_MAC * e_MAC``.

Default constants: 45 nm CMOS, 32-bit float, from M. Horowitz, "Computing's
energy problem (and what we can do about it)", ISSCC 2014: an add costs
0.9 pJ, a multiply 3.7 pJ, so an accumulate (AC, one SynOp) 0.9 pJ and a
multiply-accumulate (MAC) 0.9 + 3.7 = 4.6 pJ. Memory access is not counted
(as in the usual SNN-vs-ANN comparisons); say so when quoting the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EnergyModel:
    """Energy per operation, in picojoules."""

    pj_per_ac: float = 0.9  # one accumulate (a SynOp)
    pj_per_mac: float = 4.6  # one multiply-accumulate

    def __post_init__(self):
        for name in ("pj_per_ac", "pj_per_mac"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")

    def energy_pj(self, acs: float, macs: float) -> float:
        return acs * self.pj_per_ac + macs * self.pj_per_mac

    def describe(self) -> str:
        return (
            f"energy: {self.pj_per_ac} pJ per AC (SynOp), {self.pj_per_mac} pJ per MAC "
            "(45 nm, fp32; Horowitz, ISSCC 2014); memory access not counted"
        )
