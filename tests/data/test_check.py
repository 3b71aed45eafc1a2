"""Every validation problem, triggered by a small bad fixture: one-line message and exit status."""

from __future__ import annotations

import json

import pytest

from dynatss.cli.main import main
from dynatss.data.datasets import read_dataset
from tests.data.helpers import SPEC, voc_xml, write_coco, write_image, write_voc, write_yolo


def _check(capsys, root, *extra):
    code = main(["data", "check", str(root), *extra])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def _line(lines, *parts):
    hits = [line for line in lines if all(part in line for part in parts)]
    assert hits, f"no line with {parts} in:\n" + "\n".join(lines)
    return hits[0]


def test_clean_dataset_passes_with_summary(tmp_path, capsys):
    code, lines, _ = _check(capsys, write_coco(tmp_path))
    assert code == 0
    _line(lines, "split train: 3 images, 3 boxes", "1 images without boxes")
    _line(lines, "boxes per class: cat 1, dog 2")
    # areas: 18*22=396 small, 28*7=196 small, 30*40=1200 medium
    _line(lines, "small 2, medium 1, large 0")


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_unreadable_or_truncated_image_is_an_error(tmp_path, capsys, kind):
    write_coco(tmp_path)
    path = tmp_path / "train" / "a.png"
    data = path.read_bytes()
    path.write_bytes(b"not an image" if kind == "garbage" else data[: len(data) // 2])
    code, lines, _ = _check(capsys, tmp_path)
    assert code == 1
    _line(lines, "error:", str(path), "image skipped")
    if kind == "truncated":  # training reads headers only; the decode check is check-mode's job
        assert len(read_dataset("coco", tmp_path, "train").records) == 3
    assert len(read_dataset("coco", tmp_path, "train", verify=True).records) == 2


def test_image_size_differing_from_annotation(tmp_path, capsys):
    write_coco(tmp_path, tweak=lambda d: d["images"][0].update(width=41))
    code, lines, _ = _check(capsys, tmp_path)
    assert code == 1
    _line(lines, "error:", "instances_train.json", "image 'a.png' is 40x30 but the annotation says 41x30")


def test_degenerate_box_is_a_warning_unless_strict(tmp_path, capsys):
    # Training skips a zero-size box and goes on: the check agrees (exit 0), --strict fails on it.
    write_coco(tmp_path, tweak=lambda d: d["annotations"][0].update(bbox=[5, 5, 0, 10]))
    code, lines, _ = _check(capsys, tmp_path)
    assert code == 0
    _line(lines, "warning:", "image 'a.png' annotation id 1 (cat): degenerate box [5, 5, 5, 15]")
    assert main(["data", "check", str(tmp_path), "--strict"]) == 1
    assert read_dataset("coco", tmp_path, "train").records[0].labels.tolist() == [1]


def test_box_outside_image_is_clipped_with_a_warning(tmp_path, capsys):
    write_coco(tmp_path, tweak=lambda d: d["annotations"][0].update(bbox=[-4, 3, 50, 10]))
    code, lines, _ = _check(capsys, tmp_path)
    assert code == 0
    _line(
        lines,
        "warning:",
        "annotation id 1 (cat): box [-4, 3, 46, 13] extends outside the 40x30 image; clipped",
    )
    assert read_dataset("coco", tmp_path, "train").records[0].boxes[0].tolist() == [0, 3, 40, 13]


def test_unknown_class_in_each_format(tmp_path, capsys):
    write_coco(tmp_path / "coco", tweak=lambda d: d["annotations"][1].update(category_id=99))
    code, lines, _ = _check(capsys, tmp_path / "coco")
    assert code == 1
    _line(lines, "error:", "annotation id 2: unknown category id 99")

    write_voc(tmp_path / "voc")
    code, lines, _ = _check(capsys, tmp_path / "voc", "--classes", "dog")
    assert code == 1
    _line(lines, "error:", "a.xml", "object 1 (cat): unknown class name 'cat'")

    write_yolo(tmp_path / "yolo")
    (tmp_path / "yolo" / "labels" / "train" / "b.txt").write_text("5 0.5 0.5 0.2 0.2\n")
    code, lines, _ = _check(capsys, tmp_path / "yolo")
    assert code == 1
    _line(lines, "error:", "b.txt", "line 1: unknown class index 5")


def test_duplicate_image_ids(tmp_path, capsys):
    write_coco(tmp_path, tweak=lambda d: d["images"][2].update(id=1))
    code, lines, _ = _check(capsys, tmp_path)
    assert code == 1
    _line(lines, "error:", "duplicate image id 1 ('c.png')")


@pytest.mark.parametrize("name", ["../outside.png", "/etc/outside.png"])
def test_file_name_outside_root_is_refused(tmp_path, capsys, name):
    write_image(tmp_path / "outside.png", (40, 30))  # readable, so only the refusal keeps it out
    write_coco(tmp_path / "ds", tweak=lambda d: d["images"][0].update(file_name=name))
    code, lines, _ = _check(capsys, tmp_path / "ds")
    assert code == 1
    _line(lines, "error:", f"file_name '{name}' points outside the dataset root; not read")
    assert [r.path.name for r in read_dataset("coco", tmp_path / "ds", "train").records] == ["b.png", "c.png"]


def test_missing_annotation_file_is_one_line_error(tmp_path, capsys):
    write_coco(tmp_path)
    code, _, err = _check(capsys, tmp_path, "--split", "val")
    assert code == 2
    assert err.strip().count("\n") == 0 and "instances_val.json: COCO annotation file not found" in err


def test_unknown_layout_is_one_line_error(tmp_path, capsys):
    code, _, err = _check(capsys, tmp_path)
    assert code == 2 and "cannot tell the dataset format" in err and err.strip().count("\n") == 0


def test_voc_degenerate_box_checked_on_raw_coordinates(tmp_path, capsys):
    # xmin == xmax: a click, not a box; detectron2's (xmin - 1) would otherwise make it 1 px wide.
    write_voc(tmp_path)
    objects = SPEC[0][2] + [(4, 4, 5, 5, 0, False)]  # written as xmin=5 ymin=5 xmax=5 ymax=5
    (tmp_path / "Annotations" / "a.xml").write_text(voc_xml("a.png", (40, 30), objects))
    code, lines, _ = _check(capsys, tmp_path)
    assert code == 0
    _line(lines, "warning:", "a.xml", "object 3 (cat): degenerate box xmin=5 ymin=5 xmax=5 ymax=5")


def test_duplicate_annotation_ids(tmp_path, capsys):
    write_coco(tmp_path, tweak=lambda d: d["annotations"][1].update(id=1))
    code, lines, _ = _check(capsys, tmp_path)
    assert code == 1
    _line(lines, "error:", "duplicate annotation id 1")
    data = json.loads((tmp_path / "annotations" / "instances_train.json").read_text())
    assert len(data["annotations"]) == 3
