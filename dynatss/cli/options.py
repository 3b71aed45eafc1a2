"""The options every command that loads weights shares, and the one way it loads them.

``eval``, ``predict``, ``export``, ``report`` and ``assign`` take ``--weights`` (.pth, .safetensors,
and .onnx where the command can run one), ``--config`` (default: the one saved with the weights),
``key=value`` overrides anywhere among the arguments, ``--device`` (default auto) and ``--out``
(default: under the weights' run directory, RUN_DIR for RUN_DIR/checkpoints/best.pth).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dynatss.api.detector import Detector
from dynatss.config import DISPLAY_SCORE_THRESHOLD
from dynatss.engine.build import resolve_device
from dynatss.errors import DynatssError

DEVICE_HELP = "auto, cpu, cuda (or gpu), cuda:N (default: auto: CUDA when available)"


class IntermixedParser(argparse.ArgumentParser):
    """Lets ``key=value`` overrides come before and after the options (``cfg.yaml --resume a=1``).

    Plain argparse stops filling a ``nargs="*"`` positional at the first option; its intermixed
    mode does not, but cannot be used on the top-level parser (it has sub-commands).
    """

    _intermixed_active = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixed_active:  # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._intermixed_active = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixed_active = False


def add_parser(subparsers: argparse._SubParsersAction, name: str, **kwargs) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, **kwargs)
    parser.__class__ = IntermixedParser
    return parser


def add_weights_options(parser: argparse.ArgumentParser, *, weights_required: bool = True, weights_help: str,
                        out_help: str) -> None:
    """--weights, --config, --device, --out; the positional ``key=value`` overrides are the command's
    own positional list (see :func:`split_overrides`)."""
    parser.add_argument("--weights", required=weights_required, help=weights_help)
    parser.add_argument("--config", help="YAML config (default: the one saved with the weights)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--out", "--output", dest="out", help=out_help)


def split_overrides(values: list[str]) -> tuple[list[str], list[str]]:
    """(positional arguments, ``key=value`` overrides) of a command's positional list; a token that
    names an existing file is positional even if it holds a ``=``."""
    overrides = [value for value in values if "=" in value and not Path(value).exists()]
    return [value for value in values if value not in overrides], overrides


def load_detector(args: argparse.Namespace, overrides: list[str], *, local_rank: int = 0,
                  score_threshold: float = DISPLAY_SCORE_THRESHOLD) -> Detector:
    """The command's Detector: ``--weights`` with ``--config`` and the overrides on ``--device``."""
    device = resolve_device(args.device, local_rank, setting="--device")
    return Detector.from_checkpoint(args.weights, config=args.config, overrides=overrides, device=str(device),
                                    score_threshold=score_threshold)


def check_fraction(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise DynatssError(f"{name} must be in [0, 1], got {value}")
