"""Datasets as users export them: ultralytics / Roboflow data.yaml and Roboflow's COCO export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dynatss.cli.main import main
from dynatss.data.datasets import detect_format, list_splits, read_dataset
from dynatss.data.yolo_yaml import label_path
from dynatss.errors import DynatssError
from tests.data.helpers import CLASS_NAMES, SPEC, write_coco, write_yolo
from tests.data.test_formats import _comparable


def roboflow_yolo(root: Path, data: dict | None = None) -> Path:
    """Roboflow's YOLO export: <split>/images, <split>/labels and `train: ../train/images`."""
    flat = write_yolo(root.parent / f"{root.name}_flat")
    for split in ("train", "valid", "test"):
        for kind in ("images", "labels"):
            shutil.copytree(flat / kind / "train", root / split / kind)
    default = {"train": "../train/images", "val": "../valid/images", "nc": 2, "names": list(CLASS_NAMES)}
    (root / "data.yaml").write_text(yaml.safe_dump(default if data is None else data))
    return root


def _reference(tmp_path):
    return _comparable(read_dataset("yolo", write_yolo(tmp_path / "reference"), "train"))


def test_roboflow_yolo_export_reads_like_the_plain_layout(tmp_path):
    root = roboflow_yolo(tmp_path / "export")
    assert detect_format(root) == "yolo"
    assert list_splits("yolo", root) == ["train", "val", "test"]  # test: a folder data.yaml leaves out
    reference = _reference(tmp_path)
    for split in ("train", "val", "valid", "test"):
        read = read_dataset("yolo", root, split)
        assert read.problems == [] and read.meta.class_names == CLASS_NAMES
        assert _comparable(read) == reference, split
    assert read_dataset("yolo", root / "data.yaml", "val").records  # data.root may be the yaml itself


@pytest.mark.parametrize("names", [{0: "cat", 1: "dog"}, {"1": "dog", "0": "cat"}, ["cat", "dog"]])
def test_names_as_list_or_mapping(tmp_path, names):
    root = roboflow_yolo(tmp_path / "export", {"train": "train/images", "names": names})
    assert read_dataset("yolo", root, "train").meta.class_names == CLASS_NAMES


def test_path_key_and_split_lists_relative_to_the_yaml(tmp_path):
    """ultralytics style: the yaml elsewhere, `path` to the data, a split given as a list and as a .txt."""
    data_root = roboflow_yolo(tmp_path / "data")
    (data_root / "val.txt").write_text("".join(f"./valid/images/{name}\n" for name, _, _ in SPEC))
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "data.yaml").write_text(yaml.safe_dump({
        "path": "../data", "train": ["train/images", "test/images"], "val": "val.txt", "names": list(CLASS_NAMES),
    }))
    reference = _reference(tmp_path)
    train = read_dataset("yolo", config_dir, "train")
    assert len(train.records) == 2 * len(SPEC) and train.problems == []
    assert [r.boxes.round(3).tolist() for r in train.records[len(SPEC):]] == [row[4] for row in reference]
    assert _comparable(read_dataset("yolo", config_dir, "valid")) == reference


def test_missing_split_is_one_line_naming_data_yaml(tmp_path, capsys):
    root = roboflow_yolo(tmp_path / "export")
    with pytest.raises(DynatssError, match=r"data\.yaml: no split 'dev' \(splits: train, val, test") as caught:
        read_dataset("yolo", root, "dev")
    assert "\n" not in str(caught.value)
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "../train/images", "val": "../gone/images",
                                                    "names": list(CLASS_NAMES)}))
    assert main(["data", "check", str(root), "--split", "val"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.yaml: val: '../gone/images' not found" in err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": "train/images", "nc": 3, "names": ["cat", "dog"]}, "nc is 3 but names lists 2"),
        ({"train": "train/images"}, "needs a non-empty 'names'"),
        ({"train": "train/images", "names": {0: "cat", 2: "dog"}}, "indices must be 0..1"),
        ({"path": "../elsewhere", "names": ["cat"]}, "path: '../elsewhere' not found"),
    ],
)
def test_bad_data_yaml_is_one_line_error(tmp_path, data, message):
    root = roboflow_yolo(tmp_path / "export", data)
    with pytest.raises(DynatssError, match=message):
        read_dataset("yolo", root, "train")


def test_data_check_on_a_roboflow_export(tmp_path, capsys):
    root = roboflow_yolo(tmp_path / "export")
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{root} (yolo)") and "split val: 3 images, 3 boxes" in out and "split test:" in out


def test_label_path_renames_the_last_images_folder():
    assert label_path(Path("/d/images/x/train/images/a.b.jpg")) == Path("/d/images/x/train/labels/a.b.txt")
    assert label_path(Path("/d/images/train/sub/a.png")) == Path("/d/labels/train/sub/a.txt")
    assert label_path(Path("/d/train/a.png")) == Path("/d/train/a.txt")  # no images folder: beside it


def roboflow_coco(root: Path) -> Path:
    """Roboflow's COCO export: <split>/_annotations.coco.json beside the images; category 0 is the
    project (every class's supercategory, no annotations), the classes are 1..C."""
    for split in ("train", "valid"):
        plain = write_coco(tmp := root.parent / f"plain_{split}", split="train")
        shutil.copytree(plain / "train", root / split)
        data = json.loads((tmp / "annotations" / "instances_train.json").read_text())
        data["categories"] = [{"id": 0, "name": "pets", "supercategory": "none"}] + [
            {**category, "supercategory": "pets"} for category in data["categories"]
        ]
        (root / split / "_annotations.coco.json").write_text(json.dumps(data))
    return root


def test_roboflow_coco_export(tmp_path):
    root = roboflow_coco(tmp_path / "coco_export")
    assert detect_format(root) == "coco"
    assert list_splits("coco", root) == ["train", "valid"]
    reference = _comparable(read_dataset("coco", write_coco(tmp_path / "reference"), "train"))
    for split in ("train", "val", "valid"):
        read = read_dataset("coco", root, split)
        assert read.meta.class_names == CLASS_NAMES and read.problems == []  # the project is no class
        assert _comparable(read) == reference, split
