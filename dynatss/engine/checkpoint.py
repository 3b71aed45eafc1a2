"""Checkpoints: one dict per file, written atomically, loaded with ``weights_only=True``.

A training checkpoint holds everything needed to continue bit-for-bit on CPU: model, optimizer,
lr scheduler, AMP grad scaler, EMA weights, the iteration, the RNG states, the resolved config and
the dataset meta. Everything is stored as tensors / lists / numbers so that the safe
``torch.load(..., weights_only=True)`` can read it back (checkpoints may come from anywhere).
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dynatss.atomic import atomic_path
from dynatss.data.records import DatasetMeta
from dynatss.errors import DynatssError

# Periodic checkpoints are named by the iteration they were saved after (7 digits, as detectron2).
PERIODIC_NAME = "model_{:07d}.pth"
_PERIODIC_PATTERN = re.compile(r"model_(\d{7})\.pth")
LAST_NAME = "last.pth"
BEST_NAME = "best.pth"


# --------------------------------------------------------------------------------------------
# Random number generator states, in weights_only-loadable form


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA, if any) generator states as tensors, lists and numbers."""
    version, python_state, gauss_next = random.getstate()
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only if CUDA is present now)."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["name"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def meta_to_dict(meta: DatasetMeta) -> dict[str, list]:
    return {"class_names": list(meta.class_names), "category_ids": list(meta.category_ids)}


def meta_from_dict(data: dict[str, list]) -> DatasetMeta:
    return DatasetMeta(class_names=tuple(data["class_names"]), category_ids=tuple(data["category_ids"]))


# --------------------------------------------------------------------------------------------
# Writing


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        torch.save(state, temporary)
    return path


def _link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` hold the same bytes as ``source``, atomically (hard link, else a copy)."""
    with atomic_path(target) as temporary:
        try:
            os.link(source, temporary)
        except OSError:
            temporary.write_bytes(source.read_bytes())


def periodic_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of the ``model_XXXXXXX.pth`` files in ``directory``, oldest first."""
    found = []
    for path in Path(directory).glob("model_*.pth"):
        match = _PERIODIC_PATTERN.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_periodic(state: dict[str, Any], directory: str | Path, *, keep_last: int) -> Path:
    """Write ``model_{iter}.pth`` and ``last.pth``, then delete all but the newest ``keep_last``."""
    directory = Path(directory)
    path = save_checkpoint(state, directory / PERIODIC_NAME.format(state["iter"]))
    _link_or_copy(path, directory / LAST_NAME)
    for _, old in periodic_checkpoints(directory)[: -max(keep_last, 1)]:
        old.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# Reading


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a dynatss checkpoint safely; a missing, truncated or foreign file is a DynatssError."""
    path = Path(path)
    if not path.is_file():
        raise DynatssError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError (zip), EOFError, ...
        # torch's own message is long and suggests weights_only=False: wrong advice for an untrusted file.
        raise DynatssError(
            f"{path}: not a readable checkpoint (truncated, corrupt, or holding more than tensors and "
            f"plain data; {type(error).__name__})"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise DynatssError(f"{path}: not a dynatss checkpoint (no 'model' entry)")
    return state


def inference_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to predict with: the EMA weights when the run kept an EMA, else the model's."""
    ema = checkpoint.get("ema")
    if ema:
        prefix = "module."
        return {key[len(prefix) :]: value for key, value in ema.items() if key.startswith(prefix)}
    return checkpoint["model"]


# --------------------------------------------------------------------------------------------
# safetensors export


def save_safetensors(
    model: nn.Module,
    path: str | Path,
    *,
    config: dict[str, Any] | None = None,
    meta: DatasetMeta | None = None,
) -> Path:
    """Write the model's weights as safetensors; with ``config``/``meta`` also ``<path>.json`` beside.

    The JSON (``{"config": ..., "meta": ...}``) is what lets :func:`load_detector` rebuild the
    detector from a .safetensors file alone.
    """
    from safetensors.torch import save_model

    path = Path(path)
    with atomic_path(path) as temporary:
        save_model(model, str(temporary))
    if config is not None and meta is not None:
        sidecar = sidecar_path(path)
        with atomic_path(sidecar) as temporary:
            temporary.write_text(json.dumps({"config": config, "meta": meta_to_dict(meta)}, indent=1))
    return path


def sidecar_path(path: str | Path) -> Path:
    """``weights.safetensors`` -> ``weights.json`` (config and dataset meta)."""
    return Path(path).with_suffix(".json")
