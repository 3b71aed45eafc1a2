"""Run a trained detector on image files: drawn images plus one detections.json.

``predict_files`` goes through the public API (dynatss.api.Detector), so checkpoints and ONNX
exports predict alike; ``detect`` is the PyTorch forward pass + post-processing it uses.

A file that cannot be decoded (or is over the pixel limit), or whose detection fails, is reported
on one line and skipped; the other images are still processed and detections.json lists the
failures. The output folder is checked before any work is done, and every output is written
atomically, so outputs of earlier runs are never left damaged.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from dynatss.atomic import atomic_write_bytes, atomic_write_text, check_writable_folder
from dynatss.config import DEFAULT_MAX_IMAGE_PIXELS, Config
from dynatss.errors import DynatssError
from dynatss.tools.images import (
    IMAGE_SUFFIXES,
    encode_image,
    list_images,
    pad_batch,
    read_image,
    resize_for_test,
)

if TYPE_CHECKING:
    from dynatss.api import Detector

DETECTIONS_FILE = "detections.json"


@dataclass(frozen=True)
class ImagePrediction:
    """Detections of one image; boxes are xyxy in original-image pixels."""

    file: str
    output: str
    width: int
    height: int
    detections: list[dict]


@dataclass
class PredictSummary:
    predictions: list[ImagePrediction] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, one-line reason)
    detections_path: Path | None = None


def detect(detector: nn.Module, images: list[Tensor], cfg: Config, *, device: str | torch.device) -> list[dict]:
    """Detect on ``[3, h_i, w_i]`` uint8 images at the test scale; boxes in original pixels."""
    from dynatss.model.postprocess import postprocess

    resized = [resize_for_test(image, cfg.data) for image in images]
    batch = pad_batch(resized, size_divisibility=cfg.data.size_divisibility).to(device)  # [B, 3, H, W]
    image_sizes = torch.tensor([im.shape[-2:] for im in resized], device=device)  # [B, 2] (h, w)
    original_sizes = torch.tensor([im.shape[-2:] for im in images], device=device)  # [B, 2] (h, w)
    with torch.inference_mode():
        outputs = detector(batch)
        results = postprocess(outputs, image_sizes, original_sizes, cfg.inference, detector.box_coder)
    return [{key: value.cpu() for key, value in result.items()} for result in results]


def _output_names(paths: list[Path], out_dir: Path) -> list[Path]:
    """``out_dir / name`` per input, with ``_1``, ``_2`` ... added where two inputs share a name."""
    out_dir = out_dir.resolve()
    used: set[str] = {DETECTIONS_FILE}
    names = []
    for path in paths:
        if path.resolve().parent == out_dir:
            raise DynatssError(f"{out_dir}: --out must not be the folder that holds the input images")
        suffix = path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else ".png"  # what we can encode
        name, counter = path.stem + suffix, 0
        while name.lower() in used:
            counter += 1
            name = f"{path.stem}_{counter}{suffix}"
        used.add(name.lower())
        names.append(out_dir / name)
    return names


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def check_output_folder(out_dir: str | Path) -> Path:
    """Fail in one line, before any image is processed, if ``out_dir`` cannot be written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DynatssError(f"{out_dir}: --out is a file; give a folder for the drawn images and {DETECTIONS_FILE}")
    return check_writable_folder(out_dir, what="--out folder")


def predict_files(
    detector: Detector,
    inputs: list[str | Path],
    out_dir: str | Path,
    *,
    score_threshold: float | None = None,
    batch_size: int = 1,
    max_pixels: int | None = None,
    warn: Callable[[str], None] = _warn,
) -> PredictSummary:
    """Detect on the images of ``inputs`` (files or folders) and write drawn copies + detections.json.

    Images over ``max_pixels`` pixels (default: the run's ``data.max_image_pixels``) are refused.
    """
    threshold = detector.score_threshold if score_threshold is None else score_threshold
    if max_pixels is None:
        max_pixels = detector.config.data.max_image_pixels if detector.config else DEFAULT_MAX_IMAGE_PIXELS
    paths = list_images(inputs)
    if not paths:
        raise DynatssError(f"{', '.join(map(str, inputs))}: no .jpg/.jpeg/.png images found")
    out_dir = check_output_folder(out_dir)
    outputs = _output_names(paths, out_dir)
    summary = PredictSummary()
    pending: list[tuple[Path, Path, Tensor]] = []
    for position, (path, output) in enumerate(zip(paths, outputs)):
        try:
            pending.append((path, output, read_image(path, max_pixels=max_pixels)))
        except DynatssError as error:
            summary.failures.append((str(path), str(error)))
            warn(str(error))
        if len(pending) == batch_size or (pending and position == len(paths) - 1):
            _predict_isolated(detector, pending, threshold, summary, warn)
            pending = []
    document = {
        "images": [dataclasses.asdict(p) for p in summary.predictions],
        "failed": [{"file": file, "error": reason} for file, reason in summary.failures],
        "class_names": list(detector.class_names),
        "score_threshold": threshold,
    }
    summary.detections_path = atomic_write_text(out_dir / DETECTIONS_FILE, json.dumps(document, indent=1) + "\n")
    return summary


def _predict_isolated(
    detector: Detector,
    items: list[tuple[Path, Path, Tensor]],
    score_threshold: float,
    summary: PredictSummary,
    warn: Callable[[str], None],
) -> None:
    """:func:`_predict_batch`; if the batch fails, image by image, so one bad image costs only itself."""
    try:
        summary.predictions.extend(_predict_batch(detector, items, score_threshold))
        return
    except (RuntimeError, ValueError, MemoryError) as error:
        if len(items) == 1:
            path = items[0][0]
            message = f"{path}: detection failed ({(str(error).strip().splitlines() or [type(error).__name__])[0]})"
            summary.failures.append((str(path), message))
            warn(message)
            return
    for item in items:
        _predict_isolated(detector, [item], score_threshold, summary, warn)


def _predict_batch(
    detector: Detector, items: list[tuple[Path, Path, Tensor]], score_threshold: float
) -> list[ImagePrediction]:
    """Detect on (input path, output path, image) items in one forward pass; write the drawings."""
    results = detector.predict([image for _, _, image in items], score_threshold=score_threshold)
    predictions = []
    for (path, output, _), result in zip(items, results):
        atomic_write_bytes(output, encode_image(result.draw(), output.suffix))
        predictions.append(
            ImagePrediction(str(path), output.name, result.width, result.height, result.detections())
        )
    return predictions
