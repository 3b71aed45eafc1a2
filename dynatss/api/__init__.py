"""The public Python API: :class:`Detector` (load, predict, stream, evaluate, export, train) and its :class:`Result`."""

from dynatss.api.detector import Detector
from dynatss.api.result import Result

__all__ = ["Detector", "Result"]
