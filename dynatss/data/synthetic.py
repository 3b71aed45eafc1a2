"""Seeded synthetic shapes: the built-in demo data and the data of most tests.

Each class is a distinct shape with its own colour (rectangle, ellipse, triangle, cross, ...), drawn
on a mildly noisy background, so a small detector learns it on a CPU in minutes. Most objects are
medium or large; a small fraction are tiny, have extreme aspect ratios, or come packed in a crowd
(sometimes annotated as one COCO ``iscrowd`` region). Boxes are exact: each is the tight extent of
the object's drawn pixels. The dataset is cached on disk in COCO layout and regenerated only when
missing or when the parameters differ from those stored in ``synthetic_params.json``.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dynatss.data.files import write_json_atomic
from dynatss.errors import DynatssError

SHAPES = ("rectangle", "ellipse", "triangle", "cross", "diamond", "ring")
COLOURS = ((220, 60, 50), (60, 190, 70), (50, 90, 220), (230, 200, 40), (200, 60, 200), (40, 200, 210))
PARAMS_FILE = "synthetic_params.json"
_FORMAT_VERSION = 1
_COLOUR_JITTER = 25  # +- per channel around the class colour
_NOISE_STD = 5.0  # per-pixel Gaussian noise on the whole image
_MAX_COVER = 0.5  # a new object may hide at most this fraction of an earlier object's box
_TINY_SIZES = (4, 16)  # pixels, sqrt(w * h) of "tiny" objects
_EXTREME_ASPECTS = (4.0, 8.0)  # w/h (or h/w) of extreme-aspect objects


@dataclass(frozen=True)
class SyntheticSpec:
    """What the generator draws. Sizes are sqrt(w * h) in pixels."""

    image_size: int = 320
    num_classes: int = 4
    objects_per_image: tuple[int, int] = (1, 8)
    size_range: tuple[int, int] = (16, 160)
    tiny_fraction: float = 0.1
    extreme_aspect_fraction: float = 0.1
    crowd_fraction: float = 0.1  # images that also get a packed cluster of small objects


def generate_image(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[np.ndarray, list[dict]]:
    """One image [H, W, 3] uint8 and its objects: dicts with ``box`` (xyxy), ``label``, ``iscrowd``."""
    size = spec.image_size
    image = _background(rng, size)
    objects: list[dict] = []
    if rng.random() < spec.crowd_fraction:
        objects += _draw_crowd(rng, image, spec)
    for _ in range(int(rng.integers(spec.objects_per_image[0], spec.objects_per_image[1] + 1))):
        label = int(rng.integers(spec.num_classes))
        for _attempt in range(10):
            w, h = _object_size(rng, spec)
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            if _covers_too_much((x0, y0, x0 + w, y0 + h), objects):
                continue
            box = _draw_shape(rng, image, label, x0, y0, w, h)
            if box is not None:
                objects.append({"box": box, "label": label, "iscrowd": 0})
            break
    image += _NOISE_STD * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), objects


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(90, 150) + rng.uniform(-15, 15, 3)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-1.0, 1.0, size)
    gradient = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]  # [H, W]
    return (base[None, None, :] + 20.0 * gradient[:, :, None]).astype(np.float32)  # [H, W, 3]


def _object_size(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[int, int]:
    if rng.random() < spec.tiny_fraction:
        area_side = rng.uniform(*_TINY_SIZES)
    else:
        low, high = spec.size_range
        area_side = math.exp(rng.uniform(math.log(low), math.log(high)))
    if rng.random() < spec.extreme_aspect_fraction:
        aspect = rng.uniform(*_EXTREME_ASPECTS) ** rng.choice([-1.0, 1.0])
    else:
        aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    limit = spec.image_size - 1
    w = int(np.clip(round(area_side * math.sqrt(aspect)), 3, limit))
    h = int(np.clip(round(area_side / math.sqrt(aspect)), 3, limit))
    return w, h


def _covers_too_much(box: tuple[int, int, int, int], objects: list[dict]) -> bool:
    for obj in objects:
        ox1, oy1, ox2, oy2 = obj["box"]
        iw = max(0.0, min(box[2], ox2) - max(box[0], ox1))
        ih = max(0.0, min(box[3], oy2) - max(box[1], oy1))
        if iw * ih > _MAX_COVER * (ox2 - ox1) * (oy2 - oy1):
            return True
    return False


def _shape_mask(shape: str, w: int, h: int) -> np.ndarray:
    """[h, w] bool mask of ``shape`` filling a w x h box."""
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    right, bottom = w - 1, h - 1
    if shape == "rectangle":
        draw.rectangle([0, 0, right, bottom], fill=1)
    elif shape == "ellipse":
        draw.ellipse([0, 0, right, bottom], fill=1)
    elif shape == "triangle":
        draw.polygon([(0, bottom), (right / 2, 0), (right, bottom)], fill=1)
    elif shape == "cross":
        tw, th = max(1, w // 3), max(1, h // 3)
        draw.rectangle([tw, 0, right - tw, bottom], fill=1)
        draw.rectangle([0, th, right, bottom - th], fill=1)
    elif shape == "diamond":
        draw.polygon([(right / 2, 0), (right, bottom / 2), (right / 2, bottom), (0, bottom / 2)], fill=1)
    elif shape == "ring":
        draw.ellipse([0, 0, right, bottom], fill=1)
        if w >= 8 and h >= 8:
            draw.ellipse([w // 4, h // 4, right - w // 4, bottom - h // 4], fill=0)
    return np.asarray(mask, bool)


def _draw_shape(
    rng: np.random.Generator, image: np.ndarray, label: int, x0: int, y0: int, w: int, h: int
) -> tuple[float, float, float, float] | None:
    """Paint one object in place; return its exact box (tight around the painted pixels)."""
    mask = _shape_mask(SHAPES[label], w, h)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    colour = np.clip(np.array(COLOURS[label]) + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, 3), 0, 255)
    image[y0 : y0 + h, x0 : x0 + w][mask] = colour
    return (
        float(x0 + cols.min()),
        float(y0 + rows.min()),
        float(x0 + cols.max() + 1),
        float(y0 + rows.max() + 1),
    )


def _draw_crowd(rng: np.random.Generator, image: np.ndarray, spec: SyntheticSpec) -> list[dict]:
    """A packed grid of small same-class objects; half the time annotated as one iscrowd region."""
    label = int(rng.integers(spec.num_classes))
    cell = int(rng.integers(8, 17))
    rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 6))
    x0 = int(rng.integers(0, max(1, spec.image_size - cols * cell)))
    y0 = int(rng.integers(0, max(1, spec.image_size - rows * cell)))
    boxes = []
    for r in range(rows):
        for c in range(cols):
            side = int(rng.integers(max(3, cell - 4), cell))
            x, y = x0 + c * cell, y0 + r * cell
            if x + side <= spec.image_size and y + side <= spec.image_size:
                box = _draw_shape(rng, image, label, x, y, side, side)
                if box is not None:
                    boxes.append(box)
    if not boxes:
        return []
    if rng.random() < 0.5:
        region = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        return [{"box": region, "label": label, "iscrowd": 1}]
    return [{"box": box, "label": label, "iscrowd": 0} for box in boxes]


def _split_to_coco(root: Path, split: str, count: int, seed: int, spec: SyntheticSpec) -> None:
    split_code = {"train": 0, "val": 1}[split]
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        pixels, objects = generate_image(np.random.default_rng([seed, split_code, index]), spec)
        name = f"{index:06d}.png"
        Image.fromarray(pixels).save(folder / name, compress_level=1)
        images.append(
            {"id": index + 1, "file_name": name, "width": spec.image_size, "height": spec.image_size}
        )
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": obj["label"] + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": obj["iscrowd"],
                }
            )
    categories = [{"id": i + 1, "name": SHAPES[i], "supercategory": "shape"} for i in range(spec.num_classes)]
    write_json_atomic(
        root / "annotations" / f"instances_{split}.json",
        {"images": images, "annotations": annotations, "categories": categories},
    )


def ensure_synthetic_dataset(
    root: Path,
    *,
    num_train: int,
    num_val: int,
    image_size: int,
    seed: int,
    num_classes: int = 4,
    objects_per_image: tuple[int, int] = (1, 8),
    size_range: tuple[int, int] = (16, 160),
    tiny_fraction: float = 0.1,
    extreme_aspect_fraction: float = 0.1,
    crowd_fraction: float = 0.1,
) -> Path:
    """Generate (or reuse) the synthetic dataset in COCO layout under ``root``; returns ``root``.

    Writes ``root/annotations/instances_{train,val}.json`` and ``root/{train,val}/*.png``.
    """
    if not 1 <= num_classes <= len(SHAPES):
        raise DynatssError(f"synthetic data: num_classes must be in 1..{len(SHAPES)}, got {num_classes}")
    root = Path(root)
    spec = SyntheticSpec(
        image_size=image_size,
        num_classes=num_classes,
        objects_per_image=tuple(objects_per_image),
        size_range=tuple(size_range),
        tiny_fraction=tiny_fraction,
        extreme_aspect_fraction=extreme_aspect_fraction,
        crowd_fraction=crowd_fraction,
    )
    params = {
        "version": _FORMAT_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "seed": seed,
        **asdict(spec),
    }
    params = json.loads(json.dumps(params))  # tuples -> lists, as stored
    params_path = root / PARAMS_FILE
    if _cache_is_valid(root, params_path, params, {"train": num_train, "val": num_val}):
        return root
    if not params_path.exists() and any(
        (root / "annotations" / f"instances_{s}.json").exists() for s in ("train", "val")
    ):
        raise DynatssError(
            f"{root}: holds a dataset that is not dynatss synthetic data; refusing to overwrite it"
        )
    params_path.unlink(missing_ok=True)
    for split in ("train", "val"):
        shutil.rmtree(root / split, ignore_errors=True)
    for split, count in (("train", num_train), ("val", num_val)):
        _split_to_coco(root, split, count, seed, spec)
    write_json_atomic(params_path, params)
    return root


def _cache_is_valid(root: Path, params_path: Path, params: dict, counts: dict[str, int]) -> bool:
    try:
        if json.loads(params_path.read_text()) != params:
            return False
    except (OSError, ValueError):
        return False
    for split, count in counts.items():
        if not (root / "annotations" / f"instances_{split}.json").exists():
            return False
        if any(not (root / split / f"{i:06d}.png").exists() for i in range(count)):
            return False
    return True
