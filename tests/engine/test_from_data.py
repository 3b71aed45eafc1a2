"""Settings resolved from the training data: the schedule in epochs and the anchor scale."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dynatss.config import Config, SolverConfig, load_config
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.engine.build import load_split
from dynatss.engine.from_data import resolve_from_data, training_box_sizes, training_scale
from dynatss.engine.lr_schedule import schedule_in_epochs

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "recipes" / "small_data_cpu.yaml"


def _record(width: int, height: int, boxes: list[list[float]], labels: list[int]) -> ImageRecord:
    return ImageRecord(image_id=0, path=None, width=width, height=height,
                       boxes=np.array(boxes, np.float32).reshape(-1, 4), labels=np.array(labels, np.int64),
                       ignore=np.zeros(len(labels), bool))


@pytest.mark.parametrize(("images", "expected"), [
    (205, (250, [190, 235])),  # BCCD: 9 x 205 / 8 = 230.6 -> 230 steps, below the floor of 250
    (448, (500, [380, 470])),  # aquarium: 504 -> 500
    (2000, (2250, [1710, 2115])),
])
def test_schedule_in_epochs(images, expected):
    solver = SolverConfig(epochs=9, min_iter=250, batch_size=8, step_fractions=[0.76, 0.94])
    assert schedule_in_epochs(solver, images) == expected


def test_training_scale_follows_the_shorter_side_and_caps_the_longer():
    data = Config().data
    data.min_sizes, data.max_size = [300, 340], 800
    assert training_scale(_record(640, 480, [], []), data) == pytest.approx(320 / 480)
    assert training_scale(_record(3200, 400, [], []), data) == pytest.approx(800 / 3200)  # capped


def test_resolve_from_data_writes_the_choices_into_the_config():
    cfg = Config()
    cfg.model.anchor_scales, cfg.model.min_level, cfg.model.max_level = "auto", 3, 7
    cfg.data.min_sizes, cfg.data.max_size = [480], 640
    cfg.solver.epochs, cfg.solver.batch_size, cfg.solver.min_iter = 12, 2, 0
    cfg.solver.step_fractions = [0.5]
    # Ten 640 x 480 images, each with nine 60-px cells and one 20-px speck (10% of the boxes).
    cells = [[i * 60.0, 0.0, i * 60.0 + 60.0, 60.0] for i in range(9)]
    records = [_record(640, 480, [*cells, [0.0, 100.0, 20.0, 120.0]], [0] * 9 + [1]) for _ in range(10)]
    wh, labels = training_box_sizes(records, cfg.data)
    np.testing.assert_allclose(wh[-1], [20.0, 20.0])
    resolved, notes = resolve_from_data(cfg, records, DatasetMeta(("cell", "speck"), (1, 2)))
    assert resolved.model.anchor_scales == [4.0]  # the 20-px speck: IoU 0.1 with 64-px anchors
    assert (resolved.solver.max_iter, resolved.solver.steps) == (60, [30])
    assert cfg.model.anchor_scales == "auto" and cfg.solver.max_iter == 90_000  # the input is not changed
    assert any("speck" in note for note in notes) and any("60 steps" in note for note in notes)


def test_nothing_to_resolve_leaves_the_config_as_it_is():
    resolved, notes = resolve_from_data(Config(), [], DatasetMeta(("a",), (1,)))
    assert notes == [] and resolved == Config()


SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.parametrize(("dataset", "overrides", "scale", "decided_by"), [
    ("bccd", ["data.format=voc", "data.min_sizes=[320]", "data.max_size=427"], 4.0, "Platelets"),
    ("aerial_cars", ["data.format=voc", "data.min_sizes=[512]", "data.max_size=1024"], 4.0, "car"),
])
def test_real_small_object_data_choose_small_anchors(dataset, overrides, scale, decided_by):
    """The recipe's choice on the shared datasets (skipped without ../shared/data)."""
    root = SHARED_DATA / dataset
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    cfg = load_config(RECIPE, [*overrides, f"data.root={root}", "data.train_split=train"])
    train_set = load_split(cfg.data, "train")
    resolved, notes = resolve_from_data(cfg, train_set.records, train_set.meta)
    assert resolved.model.anchor_scales == [scale]
    assert f"'{decided_by}'" in notes[0]


def test_large_objects_of_a_real_dataset_keep_the_official_anchors():
    """BCCD's white cells alone (126 px at 320): 8 x stride serves them (skipped without the data)."""
    root = SHARED_DATA / "bccd"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    cfg = load_config(RECIPE, ["data.format=voc", f"data.root={root}", "data.min_sizes=[320]", "data.max_size=427"])
    train_set = load_split(cfg.data, "train")
    wbc = train_set.meta.class_names.index("WBC")
    records = [replace(r, boxes=r.boxes[r.labels == wbc], labels=r.labels[r.labels == wbc],
                       ignore=r.ignore[r.labels == wbc]) for r in train_set.records]
    resolved, _ = resolve_from_data(cfg, records, train_set.meta)
    assert resolved.model.anchor_scales == [8.0]
