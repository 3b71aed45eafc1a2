"""Datasets (issue 11): malformed COCO, no classes, links leaving the root, empty and box-less data."""

from __future__ import annotations

import os

import pytest

from dynatss.data.datasets import read_dataset
from dynatss.errors import DynatssError
from tests.data.helpers import SPEC, write_coco, write_image, write_voc, write_yolo
from tests.engine.tiny import tiny_overrides
from tests.robust.conftest import one_line_error


def _train_overrides(root, run_dir):
    overrides = tiny_overrides(root, run_dir, max_iter=1)
    kept = [o for o in overrides if not o.startswith(("data.format", "data.val_split"))]
    return [*kept, "data.format=coco", "data.val_split=train"]


@pytest.mark.parametrize("value", [None, "missing"])
def test_coco_without_annotations_reads_as_no_boxes_with_a_warning(tmp_path, value):
    def tweak(data):
        if value == "missing":
            del data["annotations"]
        else:
            data["annotations"] = value

    read = read_dataset("coco", write_coco(tmp_path, tweak=tweak), "train")
    assert len(read.records) == 3 and all(len(r.labels) == 0 for r in read.records)
    assert [p.severity for p in read.problems] == ["warning"] and "'annotations' is" in str(read.problems[0])


@pytest.mark.parametrize(
    "tweak, message",
    [
        (lambda d: d.update(annotations="none"), "'annotations' must be a list, got str"),
        (lambda d: d.update(images={"1": {}}), "'images' must be a list, got dict"),
        (lambda d: d.update(categories=[]), "'categories' is empty; a detector needs at least one class"),
        (lambda d: d.update(categories=None), "'categories' must be a list"),
    ],
)
def test_malformed_coco_sections_are_one_line_errors_naming_the_file(tmp_path, run_cli, tweak, message):
    root = write_coco(tmp_path / "data", tweak=tweak)
    code, _, err = run_cli(["data", "check", root])
    assert code == 2
    one_line_error(err, "instances_train.json", message)
    code, _, err = run_cli(["train", "/dev/null", *_train_overrides(root, tmp_path / "run")])
    assert code == 2 and not (tmp_path / "run").exists()
    one_line_error(err, "instances_train.json")


def test_malformed_coco_entries_are_problems_not_tracebacks(tmp_path):
    def tweak(data):
        data["annotations"] += [7, "text", None, {"bbox": "abcd", "image_id": 1, "category_id": 3}]
        data["images"] += [{"id": 2**70, "file_name": "b.png", "width": 30, "height": 40}]
        data["annotations"].append({"id": 99, "bbox": [1e400, 0, 1, 1], "image_id": 1, "category_id": 3})

    read = read_dataset("coco", write_coco(tmp_path, tweak=tweak), "train")
    assert len(read.records) == 3
    messages = [str(p) for p in read.problems]
    assert sum("malformed entry" in m for m in messages) == 5  # 4 annotations + the 2**70 image id
    assert any("annotation id 99" in m and "degenerate box" in m for m in messages)


def test_yolo_names_mapping_needs_integer_keys(tmp_path):
    root = write_yolo(tmp_path)
    (root / "data.yaml").write_text("names: {0: cat, x: dog}\n")
    with pytest.raises(DynatssError, match=r"data.yaml: names: keys must be class indices"):
        read_dataset("yolo", root, "train")


def test_voc_without_any_object_name_is_an_error_naming_the_folder(tmp_path):
    root = write_voc(tmp_path, spec=[("a.png", (20, 20), [])])
    with pytest.raises(DynatssError, match=r"Annotations: no object names in any annotation file"):
        read_dataset("voc", root, "train")


def test_links_that_leave_the_dataset_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    write_image(outside / "secret.png", (40, 30))
    root = write_coco(tmp_path / "coco")
    (root / "train" / "a.png").unlink()
    os.symlink(outside / "secret.png", root / "train" / "a.png")
    os.symlink(root / "train" / "b.png", root / "train" / "inside.png")  # a link within the root is fine
    read = read_dataset("coco", root, "train")
    assert [r.path.name for r in read.records] == ["b.png", "c.png"]
    (problem,) = read.problems
    assert "symbolic link to" in str(problem) and "outside the dataset root" in str(problem)

    voc = write_voc(tmp_path / "voc")
    (outside / "a.xml").write_text((voc / "Annotations" / "a.xml").read_text())
    (voc / "Annotations" / "a.xml").unlink()
    os.symlink(outside / "a.xml", voc / "Annotations" / "a.xml")
    read = read_dataset("voc", voc, "train")
    assert "a.png" not in [r.path.name for r in read.records]
    assert any("a.xml" in str(p) and "outside the dataset root" in str(p) for p in read.problems)

    yolo = write_yolo(tmp_path / "yolo")
    label = yolo / "labels" / "train" / "a.txt"
    (outside / "a.txt").write_text(label.read_text())
    label.unlink()
    os.symlink(outside / "a.txt", label)
    read = read_dataset("yolo", yolo, "train")
    assert any("a.txt" in str(p) and "outside its labels folder" in str(p) for p in read.problems)


def test_an_empty_dataset_fails_the_check(tmp_path, run_cli):
    root = write_coco(tmp_path, spec=[])
    code, out, _ = run_cli(["data", "check", root])
    assert code == 1
    assert "split 'train' has no usable images" in out and "no boxes in any split" in out


def test_a_dataset_without_boxes_fails_the_check_and_training_refuses_it(tmp_path, run_cli):
    root = write_coco(tmp_path / "data", spec=[(name, size, []) for name, size, _ in SPEC])
    code, out, _ = run_cli(["data", "check", root])
    assert code == 1 and "warning:" in out and "error:" in out and "no boxes in any split" in out
    code, _, err = run_cli(["train", "/dev/null", *_train_overrides(root, tmp_path / "run")])
    assert code == 2 and not (tmp_path / "run").exists()
    one_line_error(err, "no boxes in the training images")
