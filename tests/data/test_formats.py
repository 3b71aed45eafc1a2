"""Readers: the same fixture in COCO, VOC and YOLO gives the same records; conversion round-trips."""

from __future__ import annotations

import json

import numpy as np

from dynatss.cli.main import main
from dynatss.data.coco_io import records_to_coco
from dynatss.data.datasets import detect_format, read_dataset
from tests.data.helpers import CATEGORY_IDS, CLASS_NAMES, SPEC, write_coco, write_voc, write_yolo


def _comparable(read):
    return [
        (
            r.image_id,
            r.path.name,
            r.width,
            r.height,
            r.boxes.round(3).tolist(),
            r.labels.tolist(),
            r.ignore.tolist(),
        )
        for r in read.records
    ]


def test_same_fixture_in_three_formats_gives_identical_records(tmp_path):
    reads = {
        "coco": read_dataset("coco", write_coco(tmp_path / "coco"), "train"),
        "voc": read_dataset("voc", write_voc(tmp_path / "voc"), "train"),
        "yolo": read_dataset("yolo", write_yolo(tmp_path / "yolo"), "train"),
    }
    expected = [
        (i, name, w, h, [list(map(float, o[:4])) for o in objs], [o[4] for o in objs], [o[5] for o in objs])
        for i, (name, (w, h), objs) in enumerate(SPEC, start=1)
    ]
    for fmt, read in reads.items():
        assert read.problems == [], fmt
        assert read.meta.class_names == CLASS_NAMES, fmt
        assert _comparable(read) == expected, fmt
        assert detect_format(tmp_path / fmt) == fmt


def test_coco_category_ids_map_to_contiguous_labels_and_back(tmp_path):
    read = read_dataset("coco", write_coco(tmp_path), "train")
    assert read.meta.category_ids == CATEGORY_IDS
    assert sorted({int(label) for r in read.records for label in r.labels}) == [0, 1]
    gt = records_to_coco(read.records, read.meta)
    original = json.loads((tmp_path / "annotations" / "instances_train.json").read_text())
    assert [a["category_id"] for a in gt["annotations"]] == [
        a["category_id"] for a in original["annotations"]
    ]
    np.testing.assert_allclose(
        [a["bbox"] for a in gt["annotations"]], [a["bbox"] for a in original["annotations"]]
    )


def test_iscrowd_and_difficult_become_ignore(tmp_path):
    spec = [("a.png", (40, 30), [(2, 3, 20, 25, 0, True), (10, 5, 38, 12, 1, False)])]
    for fmt, writer in (("coco", write_coco), ("voc", write_voc)):
        record = read_dataset(fmt, writer(tmp_path / fmt, spec), "train").records[0]
        assert record.ignore.tolist() == [True, False], fmt
    read = read_dataset("coco", tmp_path / "coco", "train")
    gt = records_to_coco(read.records, read.meta)
    assert [a["iscrowd"] for a in gt["annotations"]] == [1, 0]


def test_round_trip_coco_voc_yolo_coco_keeps_boxes_and_labels(tmp_path, capsys):
    # Fractional coordinates: VOC stores integers, so boxes may move by up to 1 pixel.
    spec = [
        ("a.png", (40, 30), [(2.4, 3.6, 20.2, 25.5, 0, False), (10, 5, 38, 12, 1, False)]),
        ("b.png", (30, 40), [(0, 0, 30, 40, 1, False), (5.5, 6.5, 9.25, 30, 0, False)]),
    ]
    write_coco(tmp_path / "coco", spec)
    steps = [("coco", "voc", "1_voc"), ("voc", "yolo", "2_yolo"), ("yolo", "coco", "3_coco")]
    src_dir = tmp_path / "coco"
    for src, dst, out in steps:
        code = main(
            ["data", "convert", str(src_dir), "--from", src, "--to", dst, "--out", str(tmp_path / out)]
        )
        assert code == 0
        src_dir = tmp_path / out
    assert "split train: 2 images, 4 boxes written" in capsys.readouterr().out
    before = read_dataset("coco", tmp_path / "coco", "train")
    after = read_dataset("coco", tmp_path / "3_coco", "train")
    assert after.problems == []
    assert after.meta.class_names == before.meta.class_names
    for a, b in zip(before.records, after.records):
        assert a.path.name == b.path.name
        assert a.labels.tolist() == b.labels.tolist()
        assert np.abs(a.boxes - b.boxes).max() <= 1.0
    # Images are hard links or copies with the same bytes.
    assert (tmp_path / "3_coco" / "train" / "a.png").read_bytes() == (
        tmp_path / "coco" / "train" / "a.png"
    ).read_bytes()


def test_voc_class_names_given_and_unknown_name_reported(tmp_path):
    write_voc(tmp_path)
    read = read_dataset("voc", tmp_path, "train", class_names=["dog"])
    assert read.meta.class_names == ("dog",)
    assert all(set(r.labels.tolist()) <= {0} for r in read.records)
    messages = [str(p) for p in read.problems]
    assert any("a.xml" in m and "object 1 (cat): unknown class name 'cat'" in m for m in messages)
