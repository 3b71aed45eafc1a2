"""YOLO: ``data.yaml`` (class ``names``), ``images/<split>/*``, ``labels/<split>/<stem>.txt``.

Each label line is ``class cx cy w h`` with coordinates normalised by the image size; an image
without a label file has no objects. YOLO holds no ids, no ignore regions: image ids are the 1-based
position in the sorted image list, category ids are 1..C, and ignore boxes are not written.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dynatss.data.decode import DEFAULT_MAX_PIXELS
from dynatss.data.files import IMAGE_SUFFIXES, link_or_copy, resolves_inside, write_text_atomic
from dynatss.data.problems import Problem
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.data.validate import RawImage, RawObject, build_records
from dynatss.errors import DynatssError


def yolo_splits(root: Path) -> list[str]:
    images = Path(root) / "images"
    return sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []


def read_yolo_names(root: Path) -> list[str]:
    path = Path(root) / "data.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DynatssError(f"{path}: YOLO data.yaml not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DynatssError(f"{path}: cannot read data.yaml ({error})") from None
    except yaml.YAMLError as error:
        raise DynatssError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
            raise DynatssError(f"{path}: 'names' as a mapping needs integer class indices as keys")
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise DynatssError(f"{path}: needs a non-empty 'names' list (or mapping index -> name)")
    return [str(n) for n in names]


def read_yolo(
    root: str | Path, split: str, *, verify: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[list[ImageRecord], DatasetMeta, list[Problem]]:
    root = Path(root)
    names = read_yolo_names(root)
    meta = DatasetMeta(class_names=tuple(names), category_ids=tuple(range(1, len(names) + 1)))
    image_dir = root / "images" / split
    if not image_dir.is_dir():
        raise DynatssError(f"{image_dir}: YOLO image folder not found")
    images = sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    problems: list[Problem] = []
    raws = []
    for position, image_path in enumerate(images, start=1):
        rel = image_path.relative_to(image_dir)
        label_path = (root / "labels" / split / rel).with_suffix(".txt")
        raw = RawImage(position, rel.as_posix(), image_dir, label_path, None, None, normalized=True)
        if label_path.exists():
            raw.objects = _parse_labels(root, label_path, names, problems)
        raws.append(raw)
    records, more = build_records(raws, root=root, verify=verify, max_pixels=max_pixels)
    return records, meta, problems + more


def _parse_labels(root: Path, path: Path, names: list[str], problems: list[Problem]) -> list[RawObject]:
    num_classes = len(names)
    if not resolves_inside(path, root):
        problems.append(Problem(path, f"symbolic link to {path.resolve()}, outside the dataset root; not read"))
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(path, f"cannot read the label file ({error}); its boxes are skipped"))
        return []
    objects = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        what = f"line {line_no}"
        tokens = line.split()
        try:
            cls_index = int(tokens[0])
            cx, cy, w, h = (float(t) for t in tokens[1:])
        except (ValueError, IndexError):
            problems.append(
                Problem(path, f"{what}: expected 'class cx cy w h', got '{line.strip()}'; skipped")
            )
            continue
        if not 0 <= cls_index < num_classes:
            problems.append(
                Problem(
                    path, f"{what}: unknown class index {cls_index} (data.yaml has {num_classes}); skipped"
                )
            )
            continue
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        objects.append(RawObject(box=box, label=cls_index, ignore=False, what=f"{what} ({names[cls_index]})"))
    return objects


def write_yolo(records: list[ImageRecord], meta: DatasetMeta, out: Path, split: str) -> int:
    """Write one split and update data.yaml; returns the number of ignore boxes YOLO cannot hold."""
    out = Path(out)
    dropped = 0
    for record in records:
        link_or_copy(record.path, out / "images" / split / record.path.name)
        lines = []
        for box, label, ignore in zip(record.boxes.tolist(), record.labels.tolist(), record.ignore.tolist()):
            if ignore:
                dropped += 1
                continue
            x1, y1, x2, y2 = box
            cx, cy = (x1 + x2) / 2 / record.width, (y1 + y2) / 2 / record.height
            w, h = (x2 - x1) / record.width, (y2 - y1) / record.height
            lines.append(f"{label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        write_text_atomic(out / "labels" / split / f"{record.path.stem}.txt", "".join(lines))
    yaml_path = out / "data.yaml"
    data = yaml.safe_load(yaml_path.read_text()) if yaml_path.exists() else {}
    data = data if isinstance(data, dict) else {}
    data.update({"path": ".", split: f"images/{split}", "names": list(meta.class_names)})
    write_text_atomic(yaml_path, yaml.safe_dump(data, sort_keys=False))
    return dropped
