"""COCO JSON: ``root/annotations/instances_<split>.json`` with images in ``root/<split>/``, or
Roboflow's export: ``root/<split>/_annotations.coco.json`` beside the split's images.

Category ids may be any integers; they are mapped to contiguous labels in increasing id order and
kept in :attr:`DatasetMeta.category_ids` so exported detections use the dataset's own ids.
``iscrowd`` boxes become ignore regions (``ImageRecord.ignore``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dynatss.data.decode import DEFAULT_MAX_PIXELS
from dynatss.data.files import link_or_copy, write_json_atomic
from dynatss.data.problems import Problem
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.data.splits import split_names
from dynatss.data.validate import RawImage, RawObject, build_records
from dynatss.errors import DynatssError

# Roboflow's COCO export: one annotation file inside each split folder, beside the images.
ROBOFLOW_COCO_FILE = "_annotations.coco.json"


def coco_annotation_path(root: Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{split}.json"


def coco_split_files(root: Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of ``split``: ``annotations/instances_<split>.json`` with
    ``<split>/``, or Roboflow's ``<split>/_annotations.coco.json`` beside its images. ``val``,
    ``valid`` and ``validation`` name the same split."""
    root = Path(root)
    for name in split_names(split):
        if coco_annotation_path(root, name).is_file():
            return coco_annotation_path(root, name), root / name
        if (root / name / ROBOFLOW_COCO_FILE).is_file():
            return root / name / ROBOFLOW_COCO_FILE, root / name
    return coco_annotation_path(root, split), root / split  # missing: reading it says so


def coco_splits(root: Path) -> list[str]:
    """Splits present: ``annotations/instances_<split>.json`` names, then Roboflow split folders."""
    root = Path(root)
    splits = sorted(p.stem[len("instances_") :] for p in (root / "annotations").glob("instances_*.json"))
    return splits + sorted(p.parent.name for p in root.glob(f"*/{ROBOFLOW_COCO_FILE}") if p.parent.name not in splits)


def read_coco(
    root: str | Path,
    split: str,
    *,
    verify: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_cache: bool = True,
) -> tuple[list[ImageRecord], DatasetMeta, list[Problem]]:
    """Read one COCO split; bad images/objects are dropped and reported as problems."""
    root = Path(root)
    ann_path, image_dir = coco_split_files(root, split)
    data = _load_json(ann_path)
    problems: list[Problem] = []
    if ann_path.name == ROBOFLOW_COCO_FILE and isinstance(data.get("categories"), list):
        data = {**data, "categories": _without_group_categories(data)}
    meta = _read_categories(data, ann_path, problems)
    label_of = {cat_id: label for label, cat_id in enumerate(meta.category_ids)}

    raws: dict[int, RawImage] = {}
    raw_list: list[RawImage] = []
    for index, entry in enumerate(_entries(data, "images", ann_path, problems)):
        try:
            raw = RawImage(
                image_id=int(entry["id"]),
                file_name=str(entry["file_name"]),
                image_dir=image_dir,
                source=ann_path,
                width=int(entry["width"]) if "width" in entry else None,
                height=int(entry["height"]) if "height" in entry else None,
            )
            _check_int64(raw.image_id)
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            problems.append(Problem(ann_path, f"images[{index}]: malformed entry ({error!r}); skipped"))
            continue
        raws.setdefault(raw.image_id, raw)
        raw_list.append(raw)

    seen_ann_ids: set[int] = set()
    for index, ann in enumerate(_entries(data, "annotations", ann_path, problems)):
        try:
            what = f"annotation id {ann.get('id', f'#{index}')}"
            x, y, w, h = (float(v) for v in ann["bbox"])
            image_id, cat_id = int(ann["image_id"]), int(ann["category_id"])
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as error:
            problems.append(Problem(ann_path, f"annotations[{index}]: malformed entry ({error!r}); skipped"))
            continue
        if isinstance(ann.get("id"), (int, float, str)):
            if ann["id"] in seen_ann_ids:
                problems.append(Problem(ann_path, f"duplicate annotation id {ann['id']}"))
            seen_ann_ids.add(ann["id"])
        if image_id not in raws:
            problems.append(Problem(ann_path, f"{what}: refers to unknown image id {image_id}; skipped"))
            continue
        if cat_id not in label_of:
            problems.append(Problem(ann_path, f"{what}: unknown category id {cat_id}; skipped"))
            continue
        label = label_of[cat_id]
        raws[image_id].objects.append(
            RawObject(
                box=(x, y, x + w, y + h),
                label=label,
                ignore=bool(ann.get("iscrowd", 0)),
                what=f"{what} ({meta.class_names[label]})",
            )
        )
    records, more = build_records(
        raw_list, root=root, verify=verify, max_pixels=max_pixels, use_cache=use_cache
    )
    return records, meta, problems + more


def _check_int64(value: int) -> None:
    if not -(2**63) <= value < 2**63:
        raise OverflowError(f"id {value} does not fit in 64 bits")


def _entries(data: dict[str, Any], key: str, path: Path, problems: list[Problem]) -> list[Any]:
    """``data[key]`` as a list: missing or null is an empty list (a warning), another type an error."""
    value = data.get(key)
    if isinstance(value, list):
        return value
    if value is None:
        if key == "annotations":  # e.g. COCO's test-dev image_info files have no annotations
            problems.append(Problem(path, f"'{key}' is {'null' if key in data else 'missing'}; read as none", "warning"))
        return []
    raise DynatssError(f"{path}: '{key}' must be a list, got {type(value).__name__}")


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise DynatssError(f"{path}: COCO annotation file not found") from None
    except IsADirectoryError:
        raise DynatssError(f"{path}: is a folder, not a COCO annotation file") from None
    except OSError as error:
        raise DynatssError(f"{path}: cannot read the COCO annotation file ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise DynatssError(f"{path}: not valid JSON ({error})".replace("\n", " ")) from None
    if not isinstance(data, dict) or "categories" not in data or "images" not in data:
        raise DynatssError(f"{path}: not a COCO instances file (needs 'images' and 'categories')")
    return data


def _list_or_empty(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _without_group_categories(data: dict[str, Any]) -> list[Any]:
    """Roboflow's COCO export lists the project itself as category 0, the supercategory of every
    real class, with no annotations; it is not a class, so it is left out."""
    categories = [c for c in _list_or_empty(data.get("categories")) if isinstance(c, dict)]
    used = {a.get("category_id") for a in _list_or_empty(data.get("annotations")) if isinstance(a, dict)}
    def is_group(category: dict) -> bool:  # the supercategory of another category
        return any(other is not category and other.get("supercategory") == category.get("name") for other in categories)

    return [c for c in categories if c.get("id") in used or not is_group(c)]


def _read_categories(data: dict[str, Any], path: Path, problems: list[Problem]) -> DatasetMeta:
    names: dict[int, str] = {}
    categories = data["categories"]
    if not isinstance(categories, list):
        raise DynatssError(f"{path}: 'categories' must be a list, got {type(categories).__name__}")
    for index, cat in enumerate(categories):
        try:
            cat_id, name = int(cat["id"]), str(cat["name"])
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise DynatssError(f"{path}: categories[{index}] is malformed ({error!r})") from None
        if cat_id in names:
            problems.append(Problem(path, f"duplicate category id {cat_id} ('{name}'); first one kept"))
            continue
        names[cat_id] = name
    if not names:
        raise DynatssError(f"{path}: 'categories' is empty; a detector needs at least one class")
    ids = sorted(names)
    return DatasetMeta(class_names=tuple(names[i] for i in ids), category_ids=tuple(ids))


def records_to_coco(records: list[ImageRecord], meta: DatasetMeta) -> dict[str, Any]:
    """A COCO ground-truth dict (the dataset's own category ids; ignore boxes as ``iscrowd=1``)."""
    images, annotations = [], []
    for record in records:
        images.append(
            {
                "id": int(record.image_id),
                "file_name": record.path.name,
                "width": int(record.width),
                "height": int(record.height),
            }
        )
        for box, label, ignore in zip(record.boxes.tolist(), record.labels.tolist(), record.ignore.tolist()):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(record.image_id),
                    "category_id": int(meta.category_ids[label]),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(ignore),
                }
            )
    categories = [
        {"id": int(cat_id), "name": name, "supercategory": ""}
        for name, cat_id in zip(meta.class_names, meta.category_ids)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(records: list[ImageRecord], meta: DatasetMeta, out: Path, split: str) -> None:
    """Write ``out/annotations/instances_<split>.json`` and link/copy images into ``out/<split>/``."""
    out = Path(out)
    for record in records:
        link_or_copy(record.path, out / split / record.path.name)
    write_json_atomic(coco_annotation_path(out, split), records_to_coco(records, meta))
