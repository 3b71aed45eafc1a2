"""Load a trained detector: from a .pth checkpoint or a .safetensors file (weights, config, classes).

What every command that takes ``--weights`` starts from (through dynatss.api.Detector), and what
experiments use directly: :func:`load_trained` rebuilds the model a run trained, in eval mode.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import torch

from dynatss.config import Config, apply_overrides, config_from_dict, load_config
from dynatss.data.records import DatasetMeta
from dynatss.engine.build import resolve_device
from dynatss.engine.checkpoint import (
    inference_parts,
    load_checkpoint,
    read_safetensors,
    state_dict_mismatch,
)
from dynatss.errors import DynatssError
from dynatss.model.build import build_detector
from dynatss.model.detector import DetectionModel


def load_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict`` with a one-line error naming what does not fit (a key, both shapes)."""
    mismatch = state_dict_mismatch(model, state_dict)
    if mismatch is not None:
        raise DynatssError(f"{source}: weights do not match the model ({mismatch})")
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError) as error:
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DynatssError(f"{source}: weights do not match the model ({detail})") from None


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], DatasetMeta]:
    """(state dict to predict with, the run's config as a dict, class metadata) of a ``.pth``
    checkpoint (EMA weights if the run kept an EMA) or a ``.safetensors`` file with its sidecar."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return inference_parts(load_checkpoint(path), path)


def resolve_config(
    saved: dict[str, Any],
    source: str | Path,
    meta: DatasetMeta,
    *,
    config: str | Path | Config | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Config:
    """The config to use a trained model with: ``config`` (a YAML file or a Config) when given, else
    the one saved with the weights; ``overrides`` on top; the classes always those of the weights."""
    if config is None:
        resolved = apply_overrides(config_from_dict(saved, source), overrides)
    elif isinstance(config, Config):
        resolved = apply_overrides(config, overrides)
    else:
        resolved = load_config(config, overrides)
    resolved.model.num_classes = meta.num_classes
    return resolved


def checkpoint_config(
    weights_path: str | Path,
    config: str | Path | Config | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Config:
    """:func:`resolve_config` for the weights at ``weights_path`` (``dynatss eval`` without a config)."""
    _, saved, meta = read_weights(weights_path)
    return resolve_config(saved, weights_path, meta, config=config, overrides=overrides)


class TrainedModel(NamedTuple):
    """A trained detector in eval mode, the config to use it with, and its classes."""

    model: DetectionModel
    config: Config
    meta: DatasetMeta


def load_trained(
    weights_path: str | Path,
    device: str | torch.device = "cpu",
    *,
    config: str | Path | Config | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> TrainedModel:
    """Rebuild the detector a run trained (EMA weights if it kept an EMA), in eval mode on ``device``.

    Accepts a training checkpoint (``.pth``) or a ``.safetensors`` file with its ``.json`` sidecar.
    The config is the one saved with the weights unless ``config`` is given (see
    :func:`resolve_config`). Backbone weights are not downloaded: the checkpoint already holds them.
    """
    path = Path(weights_path)
    state_dict, saved, meta = read_weights(path)
    config = resolve_config(saved, path, meta, config=config, overrides=overrides)
    model = build_detector(dataclasses.replace(config.model, pretrained=None))  # weights: the file's
    load_weights(model, state_dict, path)
    if isinstance(device, str):  # "auto", "cuda", "gpu", ...: the one device rule of every command
        device = resolve_device(device, setting="device")
    return TrainedModel(model.to(device).eval(), config, meta)


def run_dir_of(weights: str | Path) -> Path:
    """The run directory of a weights file: RUN_DIR for RUN_DIR/checkpoints/NAME, else its folder.
    Commands write their outputs there unless told otherwise, whatever the current folder."""
    folder = Path(weights).resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder
