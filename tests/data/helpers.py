"""Tiny dataset fixtures written by the tests: one spec, written as COCO, VOC or YOLO by hand."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

CLASS_NAMES = ("cat", "dog")  # sorted, so VOC's sorted-name labels match COCO's id order
CATEGORY_IDS = (3, 7)  # non-contiguous on purpose

# file name, (width, height), objects as (x1, y1, x2, y2, label, ignore) in continuous pixels
SPEC = [
    ("a.png", (40, 30), [(2, 3, 20, 25, 0, False), (10, 5, 38, 12, 1, False)]),
    ("b.png", (30, 40), [(0, 0, 30, 40, 1, False)]),
    ("c.png", (36, 36), []),
]


def write_image(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    width, height = size
    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_coco(root: Path, spec=SPEC, split: str = "train", *, tweak=None) -> Path:
    """COCO layout; ``tweak(data)`` may edit the JSON dict before it is written."""
    images, annotations = [], []
    for index, (name, size, objects) in enumerate(spec, start=1):
        write_image(root / split / name, size, seed=index)
        images.append({"id": index, "file_name": name, "width": size[0], "height": size[1]})
        for x1, y1, x2, y2, label, ignore in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": CATEGORY_IDS[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(ignore),
                }
            )
    categories = [{"id": i, "name": n} for n, i in zip(CLASS_NAMES, CATEGORY_IDS)]
    data = {"images": images, "annotations": annotations, "categories": categories}
    if tweak is not None:
        tweak(data)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root


def voc_xml(name: str, size: tuple[int, int], objects, *, names=CLASS_NAMES) -> str:
    """VOC XML with 1-based inclusive coordinates: xmin = x1 + 1, xmax = x2."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = name
    size_el = ET.SubElement(root, "size")
    ET.SubElement(size_el, "width").text = str(size[0])
    ET.SubElement(size_el, "height").text = str(size[1])
    for x1, y1, x2, y2, label, ignore in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = names[label] if isinstance(label, int) else label
        ET.SubElement(obj, "difficult").text = str(int(ignore))
        box = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1 + 1, y1 + 1, x2, y2)):
            ET.SubElement(box, key).text = str(value)
    return ET.tostring(root, encoding="unicode")


def write_voc(root: Path, spec=SPEC, split: str = "train") -> Path:
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for index, (name, size, objects) in enumerate(spec, start=1):
        write_image(root / "JPEGImages" / name, size, seed=index)
        (root / "Annotations" / f"{Path(name).stem}.xml").write_text(voc_xml(name, size, objects))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text(
        "".join(f"{Path(n).stem}\n" for n, _, _ in spec)
    )
    return root


def write_yolo(root: Path, spec=SPEC, split: str = "train") -> Path:
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"names": list(CLASS_NAMES)}))
    for index, (name, (width, height), objects) in enumerate(spec, start=1):
        write_image(root / "images" / split / name, (width, height), seed=index)
        lines = [
            f"{label} {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} {(x2 - x1) / width} {(y2 - y1) / height}\n"
            for x1, y1, x2, y2, label, ignore in objects
            if not ignore
        ]
        label_path = root / "labels" / split / f"{Path(name).stem}.txt"
        label_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.write_text("".join(lines))
    return root
