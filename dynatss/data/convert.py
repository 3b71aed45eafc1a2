"""``dynatss data convert``: read one format, write another (images hard-linked where possible).

Lossless for what each target holds: COCO keeps category ids and iscrowd; VOC keeps names and
``difficult`` (integer 1-based coordinates, see voc_io); YOLO keeps names and normalised boxes but
has no ignore regions (dropped, and counted in the report).
"""

from __future__ import annotations

from pathlib import Path

from dynatss.data.coco_io import write_coco
from dynatss.data.datasets import list_splits, read_dataset
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.data.voc_io import write_voc
from dynatss.data.yolo_io import write_yolo
from dynatss.errors import DynatssError


def convert_dataset(
    src: str | Path,
    src_fmt: str,
    dst_fmt: str,
    out: str | Path,
    *,
    splits: list[str] | None = None,
    class_names: list[str] | None = None,
) -> list[str]:
    """Convert ``splits`` (default: all) of ``src``; returns report lines (problems, counts)."""
    src, out = Path(src).resolve(), Path(out).resolve()
    if out == src:
        raise DynatssError(f"{out}: output folder must differ from the source")
    lines = []
    for split in splits or list_splits(src_fmt, src):
        read = read_dataset(src_fmt, src, split, class_names=class_names)
        _check_unique_names(read.records, split)
        lines += [str(p) for p in read.problems]
        dropped = _write(dst_fmt, read.records, read.meta, out, split)
        boxes = sum(len(r.labels) for r in read.records)
        note = f" ({dropped} ignore boxes dropped: {dst_fmt} has no ignore regions)" if dropped else ""
        lines.append(f"split {split}: {len(read.records)} images, {boxes} boxes written to {out}{note}")
    return lines


def _check_unique_names(records: list[ImageRecord], split: str) -> None:
    seen: dict[str, Path] = {}
    for record in records:
        other = seen.setdefault(record.path.name, record.path)
        if other != record.path:
            raise DynatssError(f"{record.path}: same file name as {other} in split {split}; cannot flatten")


def _write(fmt: str, records: list[ImageRecord], meta: DatasetMeta, out: Path, split: str) -> int:
    if fmt == "coco":
        write_coco(records, meta, out, split)
        return 0
    if fmt == "voc":
        write_voc(records, meta, out, split)
        return 0
    if fmt == "yolo":
        return write_yolo(records, meta, out, split)
    raise DynatssError(f"unknown dataset format '{fmt}' (expected coco, voc or yolo)")
