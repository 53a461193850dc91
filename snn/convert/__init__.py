"""ANN-to-SNN conversion of trained PyTorch models.

``convert(model, calibration_data)`` traces the model (torch.fx, falling back
to walking nested ``Sequential`` containers), looks every module and function
up in a registry of handlers, folds BatchNorm into the preceding layer,
normalises each layer by a percentile of its ReLU activations on the
calibration data (or, with ``T=``, by the scale whose ``T``-step rate code of
them has the least error), and builds an event-driven network of IF neurons (reset by
subtraction, membrane starting at half threshold) whose last layer is read
out as accumulated membrane. The input is analog and constant: the first
layer multiplies it once and uses it as a bias.

Anything the registry does not know raises :class:`ConversionError` naming
the module or function, its path in the model, and how to register a
handler; nothing is passed through silently.

The modules, each importing only those above it:

- ``base``: the error, the checks of samples, labels and models, the
  activation scales (a percentile, the code of least error) and the trained clip;
- ``ops``: the intermediate form (:class:`Op`), the registry of handlers,
  the torch.fx tracer;
- ``chain``: a chain of layers to a stack (:class:`ConvertedNetwork`);
- ``graph``: any other graph (residual adds, concatenations) to an
  :class:`snn.Graph` (:class:`ConvertedGraph`);
- ``dispatch``: :func:`convert`, which sends a model to one of the two;
- ``calibration``: :func:`calibrate`, layer-wise bias or potential correction,
  layer-wise or end-to-end (``what="network"``) weight fits;
- ``evaluation``: :func:`evaluate`, :class:`Trajectory`, :func:`early_exit`;
- ``stopping``: :func:`run_early_exit`, an early exit that stops the run;
- ``frames``: frame sequences (VIDEO-DIGITS, :func:`video_digits`) run
  frame by frame, with carried state, or by delta propagation
  (:class:`DeltaNetwork`): :func:`run_frames`.

This file only names the public API.
"""

from .base import ConversionError, check_samples
from .calibration import LayerCalibration, calibrate
from .chain import ConvertedNetwork
from .dispatch import convert
from .evaluation import EarlyExit, Evaluation, Trajectory, early_exit, evaluate, readout_trajectory
from .frames import (
    DeltaNetwork,
    DeltaRun,
    DeltaState,
    FramesRun,
    VideoDigits,
    ann_frame_logits,
    place,
    run_frames,
    video_digits,
    video_digits_cnn,
    video_digits_train,
)
from .graph import ConvertedGraph
from .ops import Op, register_function, register_module
from .stopping import ExitedRun, ExitRule, run_early_exit

__all__ = [
    "ConversionError",
    "ConvertedGraph",
    "ConvertedNetwork",
    "DeltaNetwork",
    "DeltaRun",
    "DeltaState",
    "EarlyExit",
    "Evaluation",
    "ExitRule",
    "ExitedRun",
    "FramesRun",
    "LayerCalibration",
    "Op",
    "Trajectory",
    "VideoDigits",
    "ann_frame_logits",
    "calibrate",
    "check_samples",
    "convert",
    "early_exit",
    "place",
    "evaluate",
    "readout_trajectory",
    "register_function",
    "register_module",
    "run_early_exit",
    "run_frames",
    "video_digits",
    "video_digits_cnn",
    "video_digits_train",
]
