"""Aquarium (a Roboflow YOLO export, shared with the project, read as users have it): the config's
splits resolve, `data check` works and reports the two zero-size boxes of the test split."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynatss.cli.main import main
from dynatss.config import load_config
from dynatss.engine.build import load_split

REPO = Path(__file__).resolve().parents[2]
AQUARIUM = REPO.parent / "shared" / "data" / "aquarium"
pytestmark = pytest.mark.skipif(not AQUARIUM.is_dir(), reason="Aquarium not found at ../shared/data/aquarium")
CLASSES = ("fish", "jellyfish", "penguin", "puffin", "shark", "starfish", "stingray")


def test_the_aquarium_config_reads_the_export_as_is(monkeypatch):
    monkeypatch.chdir(REPO)  # configs name the data relative to the repository root
    cfg = load_config(REPO / "configs" / "aquarium_mnv2_cpu.yaml")
    assert (cfg.data.format, cfg.data.train_split, cfg.data.val_split) == ("yolo", "train", "valid")
    train, valid = load_split(cfg.data, cfg.data.train_split), load_split(cfg.data, cfg.data.val_split)
    assert (len(train.records), len(valid.records)) == (448, 127)
    assert train.meta.class_names == valid.meta.class_names == CLASSES
    assert train.problems == [] and valid.problems == []
    assert sum(len(r.labels) for r in valid.records) == 909


def test_data_check_on_aquarium(capsys):
    code = main(["data", "check", str(AQUARIUM)])
    out = capsys.readouterr().out
    assert code == 0  # two zero-size boxes in the test split, as exported: warnings (training skips them)
    assert "split train: 448 images" in out and "split val: 127 images" in out and "split test: 63 images" in out
    assert "0 errors, 2 warnings" in out and out.count("degenerate box") == 2
    assert main(["data", "check", str(AQUARIUM), "--strict"]) == 1
