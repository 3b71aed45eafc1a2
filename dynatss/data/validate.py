"""Turn what a reader parsed into clean :class:`ImageRecord` objects, recording every problem.

The checks every format shares run here, once: duplicate image ids, file names pointing outside the
dataset root (by name or by a symbolic link), unreadable, truncated or oversized images, image sizes
that disagree with the annotation, degenerate boxes (dropped) and boxes outside the image (clipped).

Severity says what is lost: an *error* drops an image or a real box, which the user should fix; a
*warning* loses nothing of value (a zero-size box holds no box to learn; a clipped box keeps its
visible part). Training skips both and goes on; ``data check`` exits 1 on errors (``--strict``: on
warnings too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynatss.data.decode import DEFAULT_MAX_PIXELS
from dynatss.data.files import resolves_inside, safe_join
from dynatss.data.problems import Problem
from dynatss.data.records import ImageRecord
from dynatss.data.scan import header_sizes, scan_images

# Boxes at most this far (pixels) outside the image are clipped silently: float rounding, e.g. of
# YOLO's normalised coordinates, is not an annotation problem.
_CLIP_TOLERANCE = 0.01


@dataclass
class RawObject:
    """One parsed box before checking. ``what`` names it in messages, e.g. ``object 3 (RBC)``."""

    box: tuple[float, float, float, float]  # xyxy, original-image pixels, continuous
    label: int
    ignore: bool
    what: str


@dataclass
class RawImage:
    """One parsed image entry. ``width``/``height`` are the annotated size (None if not given)."""

    image_id: int
    file_name: str
    image_dir: Path
    source: Path
    width: int | None
    height: int | None
    objects: list[RawObject] = field(default_factory=list)
    # YOLO stores boxes as fractions of the image size: scaled once the header gives the size.
    normalized: bool = False


def build_records(
    raws: list[RawImage],
    *,
    root: Path,
    verify: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_cache: bool = True,
) -> tuple[list[ImageRecord], list[Problem]]:
    """Check ``raws`` (images of the dataset at ``root``); return the clean records and the problems.

    An image, symbolic links followed, must lie inside ``root`` or inside the folder its entry names
    (a YOLO data.yaml may list split folders elsewhere).

    ``verify`` decodes every image fully (``data check``, ``train``; cached, see scan.py; without
    ``use_cache`` every image is decoded afresh), otherwise only headers are read. Images over
    ``max_pixels`` pixels are refused either way.
    """
    problems: list[Problem] = []
    seen_ids: set[int] = set()
    located: list[tuple[RawImage, Path]] = []
    for raw in raws:
        if raw.image_id in seen_ids:
            problems.append(
                Problem(raw.source, f"duplicate image id {raw.image_id} ('{raw.file_name}'); skipped")
            )
            continue
        seen_ids.add(raw.image_id)
        path = safe_join(raw.image_dir, raw.file_name)
        if path is None:
            problems.append(
                Problem(raw.source, f"file_name '{raw.file_name}' points outside the dataset root; not read")
            )
            continue
        if not (resolves_inside(path, root) or resolves_inside(path, raw.image_dir)):
            problems.append(
                Problem(path, f"symbolic link to {path.resolve()}, outside the dataset root {root}; not read")
            )
            continue
        located.append((raw, path))

    paths = [path for _, path in located]
    if verify:
        sizes = scan_images(paths, root=root, max_pixels=max_pixels, use_cache=use_cache)
    else:
        sizes = header_sizes(paths, max_pixels=max_pixels)
    records = []
    for (raw, path), size in zip(located, sizes):
        if isinstance(size, str):
            problems.append(Problem(path, f"{size}; image skipped"))
            continue
        width, height = size
        if raw.width is not None and raw.height is not None and (raw.width, raw.height) != size:
            problems.append(
                Problem(
                    raw.source,
                    f"image '{raw.file_name}' is {width}x{height} but the annotation says "
                    f"{raw.width}x{raw.height}; image skipped",
                )
            )
            continue
        records.append(_clean_record(raw, path, width, height, problems))
    return records, problems


def _clean_record(raw: RawImage, path: Path, width: int, height: int, problems: list[Problem]) -> ImageRecord:
    boxes, labels, ignore = [], [], []
    for obj in raw.objects:
        if raw.normalized:
            obj = RawObject(
                (obj.box[0] * width, obj.box[1] * height, obj.box[2] * width, obj.box[3] * height),
                obj.label,
                obj.ignore,
                obj.what,
            )
        x1, y1, x2, y2 = obj.box
        where = f"image '{raw.file_name}' {obj.what}"
        if not (x2 > x1 and y2 > y1) or not np.all(np.isfinite(obj.box)):
            problems.append(
                Problem(
                    raw.source,
                    f"{where}: degenerate box {_fmt(obj.box)} (zero or negative size); skipped",
                    "warning",
                )
            )
            continue
        clipped = (
            min(max(x1, 0.0), width),
            min(max(y1, 0.0), height),
            min(max(x2, 0.0), width),
            min(max(y2, 0.0), height),
        )
        overshoot = max(abs(a - b) for a, b in zip(clipped, obj.box))
        if overshoot > _CLIP_TOLERANCE:
            if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
                problems.append(
                    Problem(
                        raw.source,
                        f"{where}: box {_fmt(obj.box)} lies outside the {width}x{height} image; skipped",
                    )
                )
                continue
            problems.append(
                Problem(
                    raw.source,
                    f"{where}: box {_fmt(obj.box)} extends outside the {width}x{height} image; clipped",
                    "warning",
                )
            )
        boxes.append(clipped)
        labels.append(obj.label)
        ignore.append(obj.ignore)
    return ImageRecord(
        image_id=raw.image_id,
        path=path,
        width=width,
        height=height,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        ignore=np.asarray(ignore, bool),
    )


def _fmt(box: tuple[float, float, float, float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"
