"""Checkpoints: one dict per file, written atomically, loaded with ``weights_only=True``.

A training checkpoint holds everything needed to continue bit-for-bit on CPU: model, optimizer,
lr scheduler, AMP grad scaler, EMA weights, the iteration, the RNG states, the resolved config and
the dataset meta. Everything is stored as tensors / lists / numbers so that the safe
``torch.load(..., weights_only=True)`` can read it back (checkpoints may come from anywhere).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dynatss.atomic import atomic_path, atomic_paths, atomic_write, write_into
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


def meta_from_dict(data: dict[str, list], source: str | Path = "checkpoint") -> DatasetMeta:
    """The dataset meta saved with a run; a malformed one is a DynatssError naming ``source``."""
    names = data.get("class_names") if isinstance(data, dict) else None
    ids = data.get("category_ids") if isinstance(data, dict) else None
    if (
        not isinstance(names, list) or not isinstance(ids, list) or not names or len(names) != len(ids)
        or not all(isinstance(n, str) for n in names)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):  # fmt: skip
        raise DynatssError(
            f"{source}: malformed 'meta' entry (needs 'class_names' and 'category_ids': equally long, "
            "non-empty lists of names and integer ids)"
        )
    return DatasetMeta(class_names=tuple(names), category_ids=tuple(ids))


# --------------------------------------------------------------------------------------------
# Writing


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    torch.save writes into an open file, so a full disk is reported as such (OSError ENOSPC), not as
    torch's "unexpected pos"; either way the error is one line and the previous file stays.
    """
    return atomic_write(path, lambda handle: torch.save(state, handle))


def _copy(source: Path, target: Path) -> None:
    """Make ``target`` a copy of ``source``, atomically. A copy, not a hard link: damage to one file
    (a truncation, a bad sector) must leave the other readable (issue 18)."""
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def periodic_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of the ``model_XXXXXXX.pth`` files in ``directory``, oldest first."""
    found = []
    for path in Path(directory).glob("model_*.pth"):
        match = _PERIODIC_PATTERN.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_periodic(state: dict[str, Any], directory: str | Path, *, keep_last: int) -> Path:
    """Write ``model_{iter}.pth`` and ``last.pth`` (its own copy), then delete all but the newest
    ``keep_last`` periodic ones. A crash between the two leaves last.pth one period behind, which
    ``--resume`` notices (it takes the newest readable checkpoint)."""
    directory = Path(directory)
    path = save_checkpoint(state, directory / PERIODIC_NAME.format(state["iter"]))
    _copy(path, directory / LAST_NAME)
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
    _check_tensor_dict(state["model"], path, "model")
    if state.get("ema") is not None:
        _check_tensor_dict(state["ema"], path, "ema")
    return state


def _check_tensor_dict(value: Any, path: Path, entry: str) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    ):
        raise DynatssError(f"{path}: malformed '{entry}' entry (expected a mapping of names to tensors)")


def inference_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to predict with: the EMA weights when the run kept an EMA, else the model's."""
    ema = checkpoint.get("ema")
    if ema:
        prefix = "module."
        return {key[len(prefix) :]: value for key, value in ema.items() if key.startswith(prefix)}
    return checkpoint["model"]


def inference_parts(
    checkpoint: dict[str, Any], path: str | Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any], DatasetMeta]:
    """(weights, config dict, meta) of a checkpoint written by ``dynatss train``, each checked."""
    if "config" not in checkpoint or "meta" not in checkpoint:
        raise DynatssError(f"{path}: checkpoint lacks its config/meta (not written by dynatss train?)")
    if not isinstance(checkpoint["config"], dict):
        raise DynatssError(f"{path}: malformed 'config' entry (expected a mapping)")
    return inference_state_dict(checkpoint), checkpoint["config"], meta_from_dict(checkpoint["meta"], path)


def state_dict_mismatch(model: nn.Module, state_dict: Mapping[str, Any]) -> str | None:
    """Why ``state_dict`` does not fit ``model``, in one phrase with an example of each kind, or None."""
    own = model.state_dict()
    shapes = [
        (key, list(value.shape), list(own[key].shape))
        for key, value in state_dict.items()
        if key in own and isinstance(value, torch.Tensor) and value.shape != own[key].shape
    ]
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    parts = []
    if shapes:
        key, theirs, ours = shapes[0]
        parts.append(f"{_count(len(shapes), 'tensor')} of another shape, e.g. {key}: file {theirs}, model {ours}")
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    return "; ".join(parts) or None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


# --------------------------------------------------------------------------------------------
# safetensors export

# The key, in the safetensors header's metadata map, of the export's description: the JSON text
# {"config": ..., "meta": ...} that lets engine.trained.load_trained rebuild the detector from the file alone.
SAFETENSORS_DESCRIPTION_KEY = "dynatss"


def save_safetensors(
    model: nn.Module,
    path: str | Path,
    *,
    config: dict[str, Any] | None = None,
    meta: DatasetMeta | None = None,
) -> Path:
    """Write the model's weights as safetensors; with ``config``/``meta`` their description too.

    The description (``{"config": ..., "meta": ...}``) goes inside the file, in the header's
    metadata map, and into ``<path>.json`` beside it (for people and earlier versions). Both are
    written to temporaries and renamed only when both are whole, the weights first, so a failure
    leaves the previous pair as it was; :func:`read_safetensors` refuses a .json that describes
    another export than its weights (issue 18).
    """
    from safetensors.torch import save_model

    path = Path(path)
    if config is None or meta is None:
        with atomic_path(path) as temporary:
            save_model(model, str(temporary))
        return path
    description = json.dumps({"config": config, "meta": meta_to_dict(meta)}, indent=1)
    with atomic_paths(path, sidecar_path(path)) as (weights, sidecar):
        save_model(model, str(weights), metadata={SAFETENSORS_DESCRIPTION_KEY: description})
        write_into(sidecar, lambda handle: handle.write(description.encode("utf-8")))
    return path


def sidecar_path(path: str | Path) -> Path:
    """``weights.safetensors`` -> ``weights.json`` (config and dataset meta)."""
    return Path(path).with_suffix(".json")


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], DatasetMeta]:
    """(weights, config dict, meta) of a ``.safetensors`` export, each checked.

    The description inside the file is the export's own; without one (an earlier version's export)
    the ``.json`` beside it is read. A ``.json`` that disagrees with the description inside, or
    that is not one, is refused in one line: the pair is not what one export wrote.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path, sidecar = Path(path), sidecar_path(path)
    if not path.is_file():
        raise DynatssError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), "pt") as handle:
            inside = (handle.metadata() or {}).get(SAFETENSORS_DESCRIPTION_KEY)
        state_dict = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise DynatssError(f"{path}: not a readable safetensors file ({error})") from None
    beside = _read_description(sidecar, sidecar) if sidecar.is_file() else None
    if inside is None and beside is None:
        raise DynatssError(f"{path}: needs {sidecar.name} beside it (config and class names)")
    description = _read_description(inside, path) if inside is not None else beside
    if beside is not None and beside != description:
        raise DynatssError(
            f"{sidecar}: describes another export than {path.name} (a failed or mixed export); export "
            f"again, or delete {sidecar.name}: {path.name} holds its own description"
        )
    config, meta = description
    return state_dict, config, meta


def _read_description(source: str | Path, where: Path) -> tuple[dict[str, Any], DatasetMeta]:
    """(config, meta) of an export's description: JSON text, or the ``.json`` file at ``source``."""
    try:
        info = json.loads(source.read_text() if isinstance(source, Path) else source)
        config, meta = info["config"], meta_from_dict(info["meta"], where)
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise DynatssError(f"{where}: not a dynatss weights description ({error!r})") from None
    if not isinstance(config, dict):
        raise DynatssError(f"{where}: not a dynatss weights description ('config' is not a mapping)")
    return config, meta
