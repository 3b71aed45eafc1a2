"""The Table V configs: each pair differs only in the assignment; the CPU configs build and train
one step through the engine's builders (random weights, no data needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dynatss.config import config_to_dict, load_config
from dynatss.engine.build import build_criterion
from dynatss.errors import DynatssError
from dynatss.losses.criterion import DetectionCriterion
from dynatss.losses.head_terms import GFLTerms, VFNetTerms
from dynatss.model.build import build_detector
from dynatss.model.outputs import GFLOutputs, VFNetOutputs
from tests.heads.conftest import scene

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PAIRS = [
    ("gfl/gflv2_r50_fpn_1x_coco.yaml", "gfl/gflv2_ciou_r50_fpn_1x_coco.yaml"),
    ("vfnet/vfnet_r50_fpn_1x_coco.yaml", "vfnet/vfnet_ciou_r50_fpn_1x_coco.yaml"),
    ("gfl/gflv2_bccd_mnv2_cpu.yaml", "gfl/gflv2_ciou_bccd_mnv2_cpu.yaml"),
    ("vfnet/vfnet_bccd_mnv2_cpu.yaml", "vfnet/vfnet_ciou_bccd_mnv2_cpu.yaml"),
]


def _differences(a: dict, b: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key in a.keys() | b.keys():
        if isinstance(a.get(key), dict):
            keys |= _differences(a[key], b[key], f"{prefix}{key}.")
        elif a.get(key) != b.get(key):
            keys.add(prefix + key)
    return keys


@pytest.mark.parametrize("plain,ciou", PAIRS)
def test_each_pair_differs_only_in_the_assignment(plain, ciou):
    plain_cfg, ciou_cfg = load_config(CONFIGS / plain), load_config(CONFIGS / ciou)
    assert plain_cfg.assign.mode == "atss" and ciou_cfg.assign.mode == "dynamic"
    assert _differences(config_to_dict(plain_cfg), config_to_dict(ciou_cfg)) == {"assign.mode", "train.output_dir"}
    assert plain_cfg.model.head == ("gfl" if plain.startswith("gfl") else "vfnet")


def test_coco_configs_are_the_papers_1x():
    for plain, ciou in PAIRS[:2]:
        for name in (plain, ciou):
            cfg = load_config(CONFIGS / name)
            assert cfg.model.backbone == "resnet50" and cfg.model.anchor_scales == [8.0]
            assert (cfg.solver.max_iter, cfg.solver.batch_size, cfg.solver.base_lr) == (90000, 16, 0.01)
            assert cfg.solver.steps == [60000, 80000] and cfg.data.min_sizes == [800]


@pytest.mark.parametrize("name", [pair[i] for pair in PAIRS[2:] for i in range(2)])
def test_cpu_configs_build_and_step(name):
    # anchor_scales: auto is resolved from the data by `train`; BCCD's choice is 4 x stride.
    cfg = load_config(CONFIGS / name, ["model.pretrained=null", "model.num_classes=3", "model.anchor_scales=[4.0]"])
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    criterion = build_criterion(cfg, model)
    assert isinstance(criterion, DetectionCriterion)
    assert isinstance(criterion.terms, GFLTerms if cfg.model.head == "gfl" else VFNetTerms)
    batch = dataclasses.replace(scene(), gt_labels=torch.tensor([[2, 0]]))
    outputs = model(batch.images)
    assert isinstance(outputs, GFLOutputs if cfg.model.head == "gfl" else VFNetOutputs)
    result = criterion(outputs, batch, progress=0.0)
    result.total.backward()
    assert torch.isfinite(result.total) and result.stats["num_pos"] > 0


@pytest.mark.parametrize("head,wrong", [("gfl", "vfl"), ("vfnet", "qfl")])
def test_a_classification_loss_the_head_does_not_train_with_is_a_user_error(head, wrong):
    cfg = load_config(overrides=[f"model.head={head}", f"loss.classification={wrong}"])
    criterion_type = GFLTerms if head == "gfl" else VFNetTerms
    kwargs = {"reg_max": 16} if head == "gfl" else {}
    with pytest.raises(DynatssError, match="loss.classification must be"):
        criterion_type(cfg.loss, **kwargs)
