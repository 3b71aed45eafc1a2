"""BCCD (VOC layout, shared with the project): two degenerate boxes reported and skipped, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynatss.cli.main import main
from dynatss.data.datasets import read_dataset

BCCD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bccd"
pytestmark = pytest.mark.skipif(not BCCD.is_dir(), reason="BCCD not found at ../shared/data/bccd")
SPLITS = {"train": 205, "val": 87, "test": 72, "trainval": 292}
DEGENERATE = ("BloodImage_00338.xml", "BloodImage_00343.xml")


def test_bccd_splits_keep_every_box_but_the_two_degenerate_ones():
    reads = {split: read_dataset("voc", BCCD, split) for split in SPLITS}
    assert {split: len(read.records) for split, read in reads.items()} == SPLITS
    boxes = {split: sum(len(r.labels) for r in read.records) for split, read in reads.items()}
    assert boxes["train"] + boxes["val"] + boxes["test"] == 4886
    assert boxes["trainval"] == boxes["train"] + boxes["val"]
    assert reads["train"].meta.class_names == ("Platelets", "RBC", "WBC")
    problems = [str(p) for p in reads["trainval"].problems]
    assert len(problems) == 2
    assert all(any(name in p and "degenerate box" in p for p in problems) for name in DEGENERATE)
    assert all((r.width, r.height) == (640, 480) for r in reads["test"].records)


def test_bccd_check_warns_about_both_and_agrees_with_training(capsys):
    """Training skips zero-size boxes and goes on, so they are warnings: exit 0, and 1 with --strict."""
    code = main(["data", "check", str(BCCD), "--split", "train", "--split", "val"])
    out = capsys.readouterr().out
    assert code == 0
    assert all(f"warning: {BCCD / 'Annotations' / name}: object" in out for name in DEGENERATE)
    assert "0 errors, 2 warnings" in out
    assert main(["data", "check", str(BCCD), "--split", "train", "--split", "val", "--strict"]) == 1
