"""Data as other tools write it (issue 18, item 9): ultralytics-style YOLO that ultralytics accepts is
read the same here, and a VOC set whose annotation XML is malformed names that file and its error."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from dynatss.data.datasets import read_dataset
from tests.data.helpers import write_voc, write_yolo
from tests.robust.conftest import one_line_error

BOM = "\ufeff"


def _records(read):
    return [(r.path.name, r.width, r.height, r.boxes.round(3).tolist(), r.labels.tolist()) for r in read.records]


@pytest.fixture
def plain_yolo(tmp_path):
    """The helpers' YOLO set and its records, read the ordinary way."""
    root = write_yolo(tmp_path / "yolo")
    read = read_dataset("yolo", root, "train")
    assert not read.problems
    return root, _records(read)


def _rewrite_labels(root, edit):
    for path in sorted((root / "labels" / "train").glob("*.txt")):
        path.write_text(edit(path.read_text()), encoding="utf-8")


def test_ultralytics_data_yaml_and_list_files(plain_yolo, tmp_path, run_cli):
    root, expected = plain_yolo
    images = sorted((root / "images" / "train").iterdir())
    (root / "train.txt").write_text(BOM + "".join(f"{path.resolve()}\n" for path in images), encoding="utf-8")
    (root / "data.yaml").write_text(BOM + yaml.safe_dump({"train": "train.txt", "nc": "2", "names": ["cat", "dog"]}),
                                    encoding="utf-8")  # fmt: skip
    read = read_dataset("yolo", root, "train")
    assert (read.problems, _records(read)) == ([], expected)
    code, out, err = run_cli(["data", "check", root])
    assert code == 0 and "0 errors, 0 warnings" in out, out + err


def test_ultralytics_label_files(plain_yolo):
    root, expected = plain_yolo
    _rewrite_labels(root, lambda text: BOM + text.replace("0 0.", "0.0 0.").replace("1 0.", "1.0 0."))
    read = read_dataset("yolo", root, "train")
    assert (read.problems, _records(read)) == ([], expected)


def test_polygon_label_lines_become_their_bounding_boxes(plain_yolo):
    root, expected = plain_yolo

    def polygons(text):
        lines = []
        for line in text.splitlines():
            label, cx, cy, w, h = line.split()
            x1, y1, x2, y2 = float(cx) - float(w) / 2, float(cy) - float(h) / 2, float(cx) + float(w) / 2, float(cy) + float(h) / 2
            points = [(x1, (y1 + y2) / 2), ((x1 + x2) / 2, y1), (x2, y1), (x2, y2), (x1, y2)]  # a pentagon
            lines.append(label + "".join(f" {x:.6f} {y:.6f}" for x, y in points))
        return "\n".join(lines) + "\n"

    _rewrite_labels(root, polygons)
    read = read_dataset("yolo", root, "train")
    assert read.problems == []
    for (name, width, height, boxes, labels), want in zip(_records(read), expected):
        assert (name, width, height, labels) == want[:3] + want[4:]
        np.testing.assert_allclose(boxes, want[3], atol=1e-3)


@pytest.mark.parametrize(("line", "message"), [
    ("0.5 0.5 0.5 0.2 0.2", "class index 0.5 is not an integer"),
    ("0 0.1 0.1 0.2 0.2 0.3", "expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...'"),
    ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4", "expected 'class cx cy w h' or a polygon"),
])  # fmt: skip
def test_unusable_label_lines_are_one_problem_each(plain_yolo, line, message):
    root, _ = plain_yolo
    (root / "labels" / "train" / "c.txt").write_text(line + "\n")
    read = read_dataset("yolo", root, "train")
    assert len(read.problems) == 1 and message in str(read.problems[0]) and "c.txt: line 1" in str(read.problems[0])


def test_a_malformed_voc_annotation_is_named_with_its_parse_error(tmp_path, run_cli):
    spec = [("a.jpg", (40, 30), [(2, 3, 20, 25, 0, False)])]
    root = write_voc(tmp_path / "voc", spec)
    (root / "Annotations" / "a.xml").write_text("<annotation><object><name>cat</name></annotation>")
    code, _, err = run_cli(["data", "check", root])
    assert code == 2
    one_line_error(err, "a.xml", "not valid XML", "mismatched tag: line 1")
    code, _, err = run_cli(["train", "/dev/null", "data.format=voc", f"data.root={root}", "data.train_split=train",
                            f"train.output_dir={tmp_path / 'run'}"])
    assert code == 2 and not (tmp_path / "run").exists()
    one_line_error(err, "a.xml", "not valid XML")
