"""Two one-class proxies built from BCCD for the recipe search (docs/results.md, "The recipe").

The held-back datasets that broke the previous recipe have one class and one or two large objects
per image. From BCCD (VOC) this writes, outside the repository:
  OUT/bccd_wbc:  BCCD with the white cells only (one class, one medium object per image);
  OUT/wbc_large: each image cropped around its white cell(s) to 1.15-1.8 x their extent, so that
                 the object fills most of the image (one class, one large object per image).
Splits are BCCD's (train 204 / test 68 images with a white cell). The crops are drawn with a fixed
seed, so the proxy is the same on every machine.

    python experiments/wbc_proxy.py ../shared/data/bccd /tmp/proxy
"""

from __future__ import annotations

import argparse
import random
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image

CLASS = "WBC"
SPLITS = ("train", "val", "test", "trainval")
CROP_MARGIN = (1.15, 1.8)  # crop extent / white-cell extent, drawn per image
SEED = 0


def _boxes(objects: list[ET.Element]) -> list[list[int]]:
    return [[int(float(o.find("bndbox").find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax")] for o in objects]


def write_wbc_only(source: Path, out: Path) -> list[str]:
    """BCCD's annotations without the red cells and platelets; returns the ids that keep a box."""
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / "JPEGImages", out / "JPEGImages", dirs_exist_ok=True)
    kept = []
    for path in sorted((source / "Annotations").glob("*.xml")):
        tree = ET.parse(path)
        root = tree.getroot()
        for obj in root.findall("object"):
            if obj.find("name").text.strip() != CLASS:
                root.remove(obj)
        if root.findall("object"):
            kept.append(path.stem)
        tree.write(out / "Annotations" / path.name)
    return kept


def write_large_crops(wbc: Path, out: Path, ids: list[str]) -> None:
    """Crop every image around its white cells so that they fill most of it."""
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    for stem in ids:
        tree = ET.parse(wbc / "Annotations" / f"{stem}.xml")
        root = tree.getroot()
        objects = root.findall("object")
        boxes = _boxes(objects)
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        image = Image.open(wbc / "JPEGImages" / f"{stem}.jpg")
        width, height = image.size
        margin = rng.uniform(*CROP_MARGIN)
        crop_w = min(width, int((x1 - x0) * margin * rng.uniform(1.0, 1.3)))
        crop_h = min(height, int((y1 - y0) * margin))
        left = max(0, min(width - crop_w, x0 - rng.randint(0, max(0, crop_w - (x1 - x0)))))
        top = max(0, min(height - crop_h, y0 - rng.randint(0, max(0, crop_h - (y1 - y0)))))
        image.crop((left, top, left + crop_w, top + crop_h)).save(out / "JPEGImages" / f"{stem}.jpg", quality=95)
        root.find("size").find("width").text = str(crop_w)
        root.find("size").find("height").text = str(crop_h)
        for obj, box in zip(objects, boxes):
            new = (max(1, box[0] - left), max(1, box[1] - top), min(crop_w, box[2] - left), min(crop_h, box[3] - top))
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), new):
                obj.find("bndbox").find(key).text = str(value)
        tree.write(out / "Annotations" / f"{stem}.xml")


def write_splits(source: Path, out: Path, ids: list[str]) -> None:
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    kept = set(ids)
    for split in SPLITS:
        lines = [line.strip() for line in (source / "ImageSets" / "Main" / f"{split}.txt").read_text().splitlines()]
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(i for i in lines if i in kept) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bccd", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    ids = write_wbc_only(args.bccd, args.out / "bccd_wbc")
    write_splits(args.bccd, args.out / "bccd_wbc", ids)
    write_large_crops(args.out / "bccd_wbc", args.out / "wbc_large", ids)
    write_splits(args.bccd, args.out / "wbc_large", ids)
    print(f"{args.out / 'bccd_wbc'}, {args.out / 'wbc_large'}: {len(ids)} images with a white cell")


if __name__ == "__main__":
    main()
