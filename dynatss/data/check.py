"""``dynatss data check``: read a dataset with full image decoding and report what it holds and lacks.

The summary gives images, boxes per class, a box-size histogram with COCO's area ranges (small
< 32^2, medium < 96^2, large otherwise, on box area) and images without boxes; then every problem on
its own line (file and object named). A split without usable images is an error (training refuses
it), a split without boxes a warning, a dataset without a single box an error. The check fails
(exit 1) on errors, and with ``strict`` on warnings too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynatss.data.datasets import DatasetRead, read_dataset
from dynatss.data.decode import DEFAULT_MAX_PIXELS
from dynatss.data.problems import Problem

# COCO's object-size ranges (area in pixels^2), as in the COCO evaluation API.
SMALL_AREA = 32**2
MEDIUM_AREA = 96**2


@dataclass
class CheckResult:
    lines: list[str]
    errors: int
    warnings: int
    failed: bool = False  # errors, or warnings under ``strict``: the exit status is 1


def summarize(name: str, read: DatasetRead) -> list[str]:
    """Summary lines for one split."""
    records, meta = read.records, read.meta
    boxes = np.concatenate([r.boxes for r in records]) if records else np.zeros((0, 4), np.float32)
    labels = np.concatenate([r.labels for r in records]) if records else np.zeros(0, np.int64)
    ignore = np.concatenate([r.ignore for r in records]) if records else np.zeros(0, bool)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    empty = sum(1 for r in records if (~r.ignore).sum() == 0)
    per_class = ", ".join(
        f"{cls} {int(((labels == i) & ~ignore).sum())}" for i, cls in enumerate(meta.class_names)
    )
    kept = areas[~ignore]
    return [
        f"split {name}: {len(records)} images, {int((~ignore).sum())} boxes "
        f"({int(ignore.sum())} ignore regions), {empty} images without boxes",
        f"  boxes per class: {per_class}",
        f"  box sizes (COCO areas): small {int((kept < SMALL_AREA).sum())}, "
        f"medium {int(((kept >= SMALL_AREA) & (kept < MEDIUM_AREA)).sum())}, "
        f"large {int((kept >= MEDIUM_AREA).sum())}",
    ]


def split_problems(root: Path, split: str, read: DatasetRead) -> list[Problem]:
    """Problems of a split as a whole: no usable images (error), no boxes (warning)."""
    if not read.records:
        return [Problem(Path(root), f"split '{split}' has no usable images")]
    if not any((~r.ignore).any() for r in read.records):
        return [Problem(Path(root), f"split '{split}' has no boxes (nothing to train on or evaluate)", "warning")]
    return []


def check_dataset(
    fmt: str,
    root: str | Path,
    splits: list[str],
    *,
    class_names: list[str] | None = None,
    strict: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_cache: bool = False,
) -> CheckResult:
    """Read every split with ``verify=True``; collect summary lines and every problem (once).

    Every image is decoded afresh unless ``use_cache``: the scan cache knows a file by its size and
    modification time, which damage in place (bit rot, a restore that keeps the time) leaves as
    they were; the fresh verdicts are cached for ``train``.
    """
    lines: list[str] = []
    seen: set[str] = set()
    errors = warnings = 0
    boxes = 0
    for split in splits:
        read = read_dataset(
            fmt, root, split, class_names=class_names, verify=True, max_pixels=max_pixels, use_cache=use_cache
        )
        lines += summarize(split, read)
        boxes += sum(int((~r.ignore).sum()) for r in read.records)
        problems = [*read.problems, *split_problems(Path(root), split, read)]
        if split == splits[-1] and boxes == 0:
            problems.append(Problem(Path(root), "no boxes in any split: nothing to train on"))
        for problem in problems:
            text = str(problem)
            if text in seen:  # VOC trainval repeats train and val
                continue
            seen.add(text)
            lines.append(text)
            errors += problem.severity == "error"
            warnings += problem.severity == "warning"
    failed = errors > 0 or (strict and warnings > 0)
    lines.append(f"{errors} errors, {warnings} warnings" + (" (--strict: warnings fail the check)" if strict else ""))
    return CheckResult(lines=lines, errors=errors, warnings=warnings, failed=failed)
