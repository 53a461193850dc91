"""``GraphResult``: the former name of :class:`snn.RunResult`, which stacks
and graphs now share (kept so that code written for it keeps working)."""

from .result import RunResult

GraphResult = RunResult
