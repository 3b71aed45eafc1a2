"""Load a trained detector for prediction and export: from a .pth checkpoint or a .safetensors file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from dynatss.config import Config, _merge, validate_config
from dynatss.data.records import DatasetMeta
from dynatss.engine.build import resolve_device
from dynatss.engine.checkpoint import (
    inference_parts,
    load_checkpoint,
    meta_from_dict,
    sidecar_path,
    state_dict_mismatch,
)
from dynatss.errors import DynatssError
from dynatss.model.build import build_detector
from dynatss.model.detector import DetectionModel


def config_from_dict(data: dict[str, Any], source: str | Path) -> Config:
    """The Config saved with a run (a plain dict) back as a Config, checked like a YAML file."""
    config = Config()
    if not isinstance(data, dict):
        raise DynatssError(f"{source}: the saved config is not a mapping")
    try:
        _merge(config, data, "")
        validate_config(config)
    except DynatssError as error:
        raise DynatssError(f"{source}: saved config: {error}") from None
    return config


def load_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict`` with a one-line error when the weights do not fit the model."""
    mismatch = state_dict_mismatch(model, state_dict)
    if mismatch is not None:
        raise DynatssError(f"{source}: weights do not match the model ({mismatch})")
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError) as error:
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DynatssError(f"{source}: weights do not match the model ({detail})") from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], DatasetMeta]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise DynatssError(f"{path}: needs {sidecar.name} beside it (config and class names)")
    try:
        info = json.loads(sidecar.read_text())
        config, meta = info["config"], meta_from_dict(info["meta"], sidecar)
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise DynatssError(f"{sidecar}: not a dynatss weights description ({error!r})") from None
    try:
        state_dict = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise DynatssError(f"{path}: not a readable safetensors file ({error})") from None
    return state_dict, config, meta


def load_detector(weights_path: str | Path, device: str | torch.device = "cpu") -> tuple[DetectionModel, Config, DatasetMeta]:
    """Rebuild the detector a run trained (EMA weights if it kept an EMA), in eval mode on ``device``.

    Accepts a training checkpoint (``.pth``) or a ``.safetensors`` file with its ``.json`` sidecar.
    Backbone weights are not downloaded: the checkpoint already holds them.
    """
    path = Path(weights_path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise DynatssError(f"{path}: weights file not found")
        state_dict, config_dict, meta = _read_safetensors(path)
    else:
        state_dict, config_dict, meta = inference_parts(load_checkpoint(path), path)
    config = config_from_dict(config_dict, path)
    if config.model.num_classes != meta.num_classes:
        raise DynatssError(
            f"{path}: the model predicts {config.model.num_classes} classes but the meta names "
            f"{meta.num_classes} ({', '.join(meta.class_names)})"
        )
    model = build_detector(dataclasses.replace(config.model, pretrained=None))  # weights: the file's
    load_weights(model, state_dict, path)
    if isinstance(device, str):  # "auto", "cuda", "gpu", ...: the one device rule of every command
        device = resolve_device(device, setting="device")
    return model.to(device).eval(), config, meta
