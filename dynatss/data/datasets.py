"""One entry point for every format: ``read_dataset(fmt, root, split) -> DatasetRead``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dynatss.data.coco_io import ROBOFLOW_COCO_FILE, coco_splits, read_coco
from dynatss.data.decode import DEFAULT_MAX_PIXELS
from dynatss.data.problems import Problem, summarize_problems
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.data.voc_io import read_voc, voc_splits
from dynatss.data.yolo_io import read_yolo, yolo_splits
from dynatss.data.yolo_yaml import find_data_yaml
from dynatss.errors import DynatssError

FORMATS = ("coco", "voc", "yolo")


@dataclass
class DatasetRead:
    """Clean records (bad images dropped, bad boxes removed), class metadata, and what was wrong."""

    records: list[ImageRecord]
    meta: DatasetMeta
    problems: list[Problem] = field(default_factory=list)

    def summary_line(self) -> str:
        """One line for the training log, e.g. ``205 images, 1021 boxes, 3 classes; no problems``."""
        boxes = sum(len(r.labels) for r in self.records)
        return (
            f"{len(self.records)} images, {boxes} boxes, {self.meta.num_classes} classes; "
            + summarize_problems(self.problems)
        )


def read_dataset(
    fmt: str,
    root: str | Path,
    split: str,
    *,
    class_names: list[str] | None = None,
    verify: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_cache: bool = True,
) -> DatasetRead:
    """Read split ``split`` of the dataset at ``root`` in format ``fmt`` ("coco", "voc", "yolo").

    ``class_names`` fixes the VOC class list (else: sorted names found in the annotations).
    ``verify`` fully decodes every image (``data check`` and ``train``; cached, see scan.py, unless
    ``use_cache`` is false), else headers only. Images over ``max_pixels`` pixels are refused (a
    problem each).
    """
    root = Path(root)
    if not root.is_dir() and not (fmt == "yolo" and find_data_yaml(root)):  # YOLO: data.yaml itself too
        raise DynatssError(f"{root}: dataset folder not found")
    options = {"verify": verify, "max_pixels": max_pixels, "use_cache": use_cache}
    if fmt == "coco":
        records, meta, problems = read_coco(root, split, **options)
    elif fmt == "voc":
        records, meta, problems = read_voc(root, split, class_names=class_names, **options)
    elif fmt == "yolo":
        records, meta, problems = read_yolo(root, split, **options)
    else:
        raise DynatssError(f"unknown dataset format '{fmt}' (expected one of {list(FORMATS)})")
    return DatasetRead(records=records, meta=meta, problems=problems)


def detect_format(root: str | Path) -> str:
    """Guess the format from the folder layout."""
    root = Path(root)
    if root.is_dir() and coco_splits(root):
        return "coco"
    if (root / "Annotations").is_dir() and (root / "ImageSets" / "Main").is_dir():
        return "voc"
    if find_data_yaml(root) is not None:
        return "yolo"
    raise DynatssError(
        f"{root}: cannot tell the dataset format (expected annotations/instances_*.json, "
        f"<split>/{ROBOFLOW_COCO_FILE}, Annotations/ + ImageSets/Main/, or data.yaml); pass --format"
    )


def list_splits(fmt: str, root: str | Path) -> list[str]:
    """The splits present in the dataset at ``root``."""
    root = Path(root)
    finder = {"coco": coco_splits, "voc": voc_splits, "yolo": yolo_splits}.get(fmt)
    if finder is None:
        raise DynatssError(f"unknown dataset format '{fmt}' (expected one of {list(FORMATS)})")
    splits = finder(root) if root.is_dir() or (fmt == "yolo" and find_data_yaml(root)) else []
    if not splits:
        raise DynatssError(f"{root}: no {fmt} splits found")
    return splits
