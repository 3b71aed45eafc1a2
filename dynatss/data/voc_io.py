"""Pascal VOC: ``Annotations/<id>.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

Coordinate convention (as detectron2): VOC boxes are 1-based inclusive pixel indices; we read
``(xmin - 1, ymin - 1, xmax, ymax)`` as continuous 0-based xyxy, so a box covering pixels 1..10
becomes [0, 10] and its width is the number of pixels covered. Writing does the inverse, rounded to
integers, with ``xmax >= xmin + 1`` so the box stays non-degenerate when read back. A box whose
annotated extent is zero (``xmax <= xmin`` or ``ymax <= ymin``: a click, not a box) is degenerate:
reported and skipped. ``difficult`` boxes become ignore regions. Class names are the sorted names
found in all annotation files, unless ``class_names`` is given. VOC holds no ids: image ids are the
1-based position in the split file and category ids are 1..C.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from dynatss.data.decode import DEFAULT_MAX_PIXELS
from dynatss.data.files import link_or_copy, resolves_inside, safe_join, write_text_atomic
from dynatss.data.problems import Problem
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.data.validate import RawImage, RawObject, build_records
from dynatss.errors import DynatssError

_COORDS = ("xmin", "ymin", "xmax", "ymax")


def voc_splits(root: Path) -> list[str]:
    return sorted(p.stem for p in (Path(root) / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)


def read_voc(
    root: str | Path,
    split: str,
    *,
    class_names: list[str] | None = None,
    verify: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_cache: bool = True,
) -> tuple[list[ImageRecord], DatasetMeta, list[Problem]]:
    root = Path(root)
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    try:
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise DynatssError(f"{split_file}: VOC split file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DynatssError(f"{split_file}: cannot read the VOC split file ({error})") from None
    problems: list[Problem] = []
    parsed = [(file_id, _parse_xml(root, file_id, problems)) for file_id in ids]
    if class_names is None:
        class_names = _all_class_names(root, problems)
    elif not class_names:
        raise DynatssError(f"{root}: an empty list of class names; a detector needs at least one class")
    meta = DatasetMeta(class_names=tuple(class_names), category_ids=tuple(range(1, len(class_names) + 1)))
    label_of = {name: label for label, name in enumerate(class_names)}
    raws = []
    for position, (file_id, tree) in enumerate(parsed, start=1):
        if tree is None:
            continue
        xml_path = root / "Annotations" / f"{file_id}.xml"
        raw = RawImage(
            image_id=position,
            file_name=_image_name(root, file_id, tree),
            image_dir=root / "JPEGImages",
            source=xml_path,
            width=_int_or_none(tree.findtext("size/width")),
            height=_int_or_none(tree.findtext("size/height")),
        )
        for k, obj in enumerate(tree.findall("object"), start=1):
            parsed_obj = _parse_object(obj, k, xml_path, label_of, problems)
            if parsed_obj is not None:
                raw.objects.append(parsed_obj)
        raws.append(raw)
    records, more = build_records(
        raws, root=root, verify=verify, max_pixels=max_pixels, use_cache=use_cache
    )
    return records, meta, problems + more


def _parse_xml(root: Path, file_id: str, problems: list[Problem]) -> ET.Element | None:
    xml_path = safe_join(root / "Annotations", f"{file_id}.xml")
    if xml_path is None:
        problems.append(
            Problem(root / "ImageSets", f"image id '{file_id}' points outside the dataset root; not read")
        )
        return None
    if not resolves_inside(xml_path, root):
        problems.append(
            Problem(xml_path, f"symbolic link to {xml_path.resolve()}, outside the dataset root; not read")
        )
        return None
    tree = _read_xml(xml_path)
    if isinstance(tree, str):
        problems.append(Problem(xml_path, f"{tree}; image skipped"))
        return None
    return tree


def _read_xml(xml_path: Path) -> ET.Element | str:
    """The root element of an annotation file, or why it cannot be read (one phrase)."""
    try:
        return ET.parse(xml_path).getroot()
    except FileNotFoundError:
        return "annotation file not found"
    except ET.ParseError as error:
        return f"not valid XML ({error})"
    except (OSError, UnicodeDecodeError) as error:
        return f"cannot read the annotation file ({error})"


def _all_class_names(root: Path, problems: list[Problem]) -> list[str]:
    """The sorted object names of every annotation file. None at all is a one-line error naming the
    first of the split's unreadable annotation files (``problems``) when there is one: it is the
    likely cause, and the error ends the read before the problems are listed."""
    names: set[str] = set()
    for xml_path in (root / "Annotations").glob("*.xml"):
        if not resolves_inside(xml_path, root):
            continue  # reported when its split is read
        tree = _read_xml(xml_path)
        if not isinstance(tree, str):  # an unreadable file is reported when its split is read
            names.update((obj.findtext("name") or "").strip() for obj in tree.findall("object"))
    names.discard("")
    if not names:
        cause = next((str(problem.path) + ": " + problem.message for problem in problems), None)
        because = f"{cause.removesuffix('; image skipped')}; and " if cause else f"{root / 'Annotations'}: "
        raise DynatssError(
            f"{because}no object names in any annotation file; a detector needs at least one class "
            "(or pass --classes)"
        )
    return sorted(names)


def _image_name(root: Path, file_id: str, tree: ET.Element) -> str:
    """``<id>.jpg`` as torchvision/detectron2 read it; else the XML's ``<filename>`` if that exists."""
    default = f"{file_id}.jpg"
    named = (tree.findtext("filename") or "").strip()
    if named and named != default:
        default_path = safe_join(root / "JPEGImages", default)
        if default_path is None or not default_path.exists():
            return named
    return default


def _parse_object(
    obj: ET.Element, k: int, xml_path: Path, label_of: dict[str, int], problems: list[Problem]
) -> RawObject | None:
    name = (obj.findtext("name") or "").strip()
    what = f"object {k} ({name})"
    if name not in label_of:
        problems.append(Problem(xml_path, f"{what}: unknown class name '{name}'; skipped"))
        return None
    try:
        xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{c}")) for c in _COORDS)
        difficult = bool(int(obj.findtext("difficult") or 0))
    except (TypeError, ValueError):
        problems.append(Problem(xml_path, f"{what}: missing or malformed bndbox; skipped"))
        return None
    if xmax <= xmin or ymax <= ymin:
        problems.append(
            Problem(
                xml_path,
                f"{what}: degenerate box xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g} "
                "(zero or negative size); skipped",
                "warning",
            )
        )
        return None
    return RawObject(
        box=(xmin - 1.0, ymin - 1.0, xmax, ymax), label=label_of[name], ignore=difficult, what=what
    )


def _int_or_none(text: str | None) -> int | None:
    try:
        value = int(float(text))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def write_voc(records: list[ImageRecord], meta: DatasetMeta, out: Path, split: str) -> None:
    """Write one split: XML per image, images linked/copied into JPEGImages, the split file."""
    out = Path(out)
    ids = []
    for record in records:
        file_id = record.path.stem
        link_or_copy(record.path, out / "JPEGImages" / record.path.name)
        write_text_atomic(out / "Annotations" / f"{file_id}.xml", _record_xml(record, meta))
        ids.append(file_id)
    write_text_atomic(out / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in ids))


def _record_xml(record: ImageRecord, meta: DatasetMeta) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = record.path.name
    size = ET.SubElement(root, "size")
    for key, value in (("width", record.width), ("height", record.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for box, label, ignore in zip(record.boxes.tolist(), record.labels.tolist(), record.ignore.tolist()):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = meta.class_names[label]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(ignore))
        xmin, ymin = round(box[0]) + 1, round(box[1]) + 1
        coords = (xmin, ymin, max(round(box[2]), xmin + 1), max(round(box[3]), ymin + 1))
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(_COORDS, coords):
            ET.SubElement(bndbox, key).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
