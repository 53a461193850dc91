"""``snn-profile``: profile a saved network on saved inputs.

Usage::

    snn-profile net.npz inputs.npz [--T 100] [--csv out.csv] [--json out.json]
    python -m snn.cli net.npz inputs.npz ...

``net.npz`` is a file written by :func:`snn.save` (a layer stack or a
graph). ``inputs.npz`` (``numpy.savez``) holds, for a layer stack, either
``spikes`` (0/1 ``[T, B, n_in]``) or ``analog`` (``[B, n_in]`` constant over
``T`` steps, with ``--T`` or an array ``T`` in the file; or ``[T, B, n_in]``);
for a graph, one ``[T, B, n]`` spike array per input population, named after
it (a graph without input populations needs no inputs file, only ``--T``).
The run's :class:`snn.Profile` is printed, and written as CSV / JSON if asked.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .io import load
from .model.graph import Graph
from .profile import profile


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snn-profile",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[7:]),
    )
    parser.add_argument("network", help="network file written by snn.save")
    parser.add_argument("inputs", nargs="?", help="inputs .npz (spikes, or analog with T; see below)")
    parser.add_argument("--T", type=int, help="time steps (analog input, or a graph without inputs)")
    parser.add_argument("--batch-size", type=int, help="samples of a graph without input populations")
    parser.add_argument("--seed", type=int, default=0, help="seed of a graph's Poisson drive")
    parser.add_argument("--dt", type=float, help="seconds per step, for rates in Hz (a graph has its own)")
    parser.add_argument("--csv", help="write the profile as CSV here")
    parser.add_argument("--json", help="write the profile as JSON here")
    return parser


def _read_inputs(path) -> dict[str, np.ndarray]:
    if path is None:
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _steps(args, arrays) -> int | None:
    if args.T is not None:
        return args.T
    if "T" in arrays:
        return int(arrays["T"])
    return None


def run_saved(network, arrays: dict, args):
    """Run ``network`` on the arrays of an inputs file; returns the result."""
    n_steps = _steps(args, arrays)
    if isinstance(network, Graph):
        inputs = {k: v for k, v in arrays.items() if k != "T"}
        if n_steps is None:
            if not inputs:
                raise SystemExit("snn-profile: a graph without inputs needs --T")
            n_steps = next(iter(inputs.values())).shape[0]
        return network.run(n_steps, inputs=inputs, batch_size=args.batch_size, seed=args.seed, progress=False)
    if "spikes" in arrays:
        return network.run(arrays["spikes"], T=n_steps)
    if "analog" in arrays:
        analog = arrays["analog"]
        if analog.ndim == 2 and n_steps is None:
            raise SystemExit(
                "snn-profile: constant analog input [B, n] needs --T (or an array T in the file)"
            )
        return network.run(analog=analog, T=n_steps)
    raise SystemExit(f"snn-profile: the inputs file must hold 'spikes' or 'analog', got {sorted(arrays)}")


def main(argv=None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    network = load(args.network)
    if args.inputs is None and not isinstance(network, Graph):
        raise SystemExit("snn-profile: a layer stack needs an inputs file")
    try:
        result = run_saved(network, _read_inputs(args.inputs), args)
    except (TypeError, ValueError) as err:
        raise SystemExit(f"snn-profile: {err}") from err
    prof = profile(result, dt=args.dt)
    print(repr(prof))
    if args.csv:
        prof.to_csv(args.csv)
        print(f"CSV: {args.csv}")
    if args.json:
        prof.to_json(args.json)
        print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
