"""YOLO: ``data.yaml`` (class ``names``, split folders) and one ``.txt`` label file per image.

The layouts of dynatss (``images/<split>/``, ``labels/<split>/``), ultralytics and Roboflow
(``<split>/images/``, ``<split>/labels/``, ``train: ../train/images`` in data.yaml) are all read:
dynatss.data.yolo_yaml finds each split's images and their label files.

Each label line is ``class cx cy w h`` with coordinates normalised by the image size, or, as
ultralytics also reads, a polygon ``class x1 y1 x2 y2 x3 y3 ...`` (a segment label), which becomes
its bounding box; a class written ``0.0`` is class 0. An image without a label file has no objects.
Label and list files may start with a UTF-8 byte order mark; a list file may name images by absolute
path. YOLO holds no ids, no ignore regions: image ids are the 1-based position in the sorted image
list, category ids are 1..C, and ignore boxes are not written.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dynatss.data.decode import DEFAULT_MAX_PIXELS
from dynatss.data.files import IMAGE_SUFFIXES, link_or_copy, resolves_inside, write_text_atomic
from dynatss.data.problems import Problem
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.data.validate import RawImage, RawObject, build_records
from dynatss.data.yolo_yaml import DataYaml, label_path, read_data_yaml, read_text

# A box line holds 4 numbers after the class; a polygon at least 3 points (ultralytics' segments).
_BOX_VALUES = 4
_MIN_POLYGON_POINTS = 3


def yolo_splits(root: Path) -> list[str]:
    return read_data_yaml(root).splits()


def read_yolo_names(root: Path) -> list[str]:
    return read_data_yaml(root).names


def read_yolo(
    root: str | Path,
    split: str,
    *,
    verify: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_cache: bool = True,
) -> tuple[list[ImageRecord], DatasetMeta, list[Problem]]:
    data = read_data_yaml(Path(root))
    names = data.names
    meta = DatasetMeta(class_names=tuple(names), category_ids=tuple(range(1, len(names) + 1)))
    problems: list[Problem] = []
    raws = []
    for image_dir, name in _split_images(data, split):
        image_path = image_dir / name
        labels = label_path(image_path)
        raw = RawImage(len(raws) + 1, name, image_dir, labels, None, None, normalized=True)
        if labels.exists():
            raw.objects = _parse_labels(labels, len(names), names, problems)
        raws.append(raw)
    records, more = build_records(
        raws, root=data.root, verify=verify, max_pixels=max_pixels, use_cache=use_cache
    )
    return records, meta, problems + more


def _split_images(data: DataYaml, split: str) -> list[tuple[Path, str]]:
    """(folder, file name relative to it) of every image of ``split``: folders are searched
    recursively and sorted; a .txt source lists one image per line, relative to its own folder."""
    images: list[tuple[Path, str]] = []
    for source in data.split_sources(split):
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            images += [(source, p.relative_to(source).as_posix()) for p in found]
        else:
            lines = (line.strip() for line in read_text(source).splitlines())
            images += [_listed_image(source.parent, line) for line in lines if line]
    return images


def _listed_image(folder: Path, line: str) -> tuple[Path, str]:
    """(folder, name) of an image a list file names: relative to the list's folder, or absolute
    (ultralytics writes and reads both; an absolute entry is as trusted as data.yaml's own paths)."""
    if Path(line).is_absolute():
        return Path(line).parent, Path(line).name
    return folder, line.removeprefix("./")


def _parse_labels(path: Path, num_classes: int, names: list[str], problems: list[Problem]) -> list[RawObject]:
    if not resolves_inside(path, path.parent):
        problems.append(Problem(path, f"symbolic link to {path.resolve()}, outside its labels folder; not read"))
        return []
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(path, f"cannot read the label file ({error}); its boxes are skipped"))
        return []
    objects = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        what = f"line {line_no}"
        parsed = _parse_line(line.split())
        if isinstance(parsed, str):
            problems.append(Problem(path, f"{what}: {parsed}; skipped"))
            continue
        cls_index, box = parsed
        if not 0 <= cls_index < num_classes:
            problems.append(
                Problem(
                    path, f"{what}: unknown class index {cls_index} (data.yaml has {num_classes}); skipped"
                )
            )
            continue
        objects.append(RawObject(box=box, label=cls_index, ignore=False, what=f"{what} ({names[cls_index]})"))
    return objects


def _parse_line(tokens: list[str]) -> tuple[int, tuple[float, float, float, float]] | str:
    """(class, normalised xyxy box) of a label line, or why it cannot be used.

    ``class cx cy w h``, or a polygon ``class x1 y1 ... xn yn`` of at least 3 points (ultralytics'
    segment labels), whose bounding box is the box, as ultralytics' ``segments2boxes``.
    """
    expected = f"expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', got '{' '.join(tokens)}'"
    try:
        cls_value, *coords = (float(token) for token in tokens)
    except ValueError:
        return expected
    if not cls_value.is_integer():
        return f"class index {tokens[0]} is not an integer"
    if len(coords) == _BOX_VALUES:
        cx, cy, w, h = coords
        return int(cls_value), (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    if len(coords) >= 2 * _MIN_POLYGON_POINTS and len(coords) % 2 == 0:
        xs, ys = coords[0::2], coords[1::2]
        return int(cls_value), (min(xs), min(ys), max(xs), max(ys))
    return expected


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
