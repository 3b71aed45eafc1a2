"""Load a trained detector for prediction and export: from a .pth checkpoint or a .safetensors file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from dynatss.config import Config, _merge
from dynatss.data.records import DatasetMeta
from dynatss.engine.checkpoint import inference_state_dict, load_checkpoint, meta_from_dict, sidecar_path
from dynatss.errors import DynatssError
from dynatss.model.build import build_detector
from dynatss.model.detector import DetectionModel


def config_from_dict(data: dict[str, Any], source: str | Path) -> Config:
    """The Config saved with a run (a plain dict) back as a Config, checked like a YAML file."""
    config = Config()
    try:
        _merge(config, data, "")
    except DynatssError as error:
        raise DynatssError(f"{source}: {error}") from None
    return config


def load_weights(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict`` with a one-line error when the weights do not fit the model."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise DynatssError(f"{source}: weights do not match the model ({detail})") from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], DatasetMeta]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise DynatssError(f"{path}: needs {sidecar.name} beside it (config and class names)")
    try:
        info = json.loads(sidecar.read_text())
        config, meta = info["config"], meta_from_dict(info["meta"])
    except (ValueError, KeyError, TypeError) as error:
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
        checkpoint = load_checkpoint(path)
        if "config" not in checkpoint or "meta" not in checkpoint:
            raise DynatssError(f"{path}: checkpoint lacks its config/meta (not written by dynatss train?)")
        state_dict, config_dict = inference_state_dict(checkpoint), checkpoint["config"]
        meta = meta_from_dict(checkpoint["meta"])
    config = config_from_dict(config_dict, path)
    model = build_detector(dataclasses.replace(config.model, pretrained=None))  # weights: the file's
    load_weights(model, state_dict, path)
    return model.to(device).eval(), config, meta
