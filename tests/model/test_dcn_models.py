"""The Table IV "-DCN" configs are their plain recipes plus the DCN keys, and a small DCN detector
trains: it overfits one synthetic image as the plain one does (tests/losses/test_overfit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from dynatss.config import AssignConfig, InferenceConfig, LossConfig, ModelConfig, config_to_dict, load_config
from dynatss.engine.build import build_criterion
from dynatss.losses.criterion import DetectionCriterion
from dynatss.losses.head_terms import ATSSTerms
from dynatss.model.build import build_detector
from dynatss.model.dcn import ModulatedDeformConv2d
from dynatss.model.inference import postprocess_to_original
from tests.heads.conftest import scene

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# (DCN config, its plain counterpart)
DCN_PAIRS = [
    ("atss_r50_dcn_fpn_1x_coco.yaml", "atss_r50_fpn_1x_coco.yaml"),
    ("dynamic_atss_r50_dcn_fpn_1x_coco.yaml", "dynamic_atss_r50_fpn_1x_coco.yaml"),
    ("dynamic_atss_r101_dcn_fpn_2x_ms_coco.yaml", "dynamic_atss_r101_fpn_2x_ms_coco.yaml"),
    ("bccd_mnv2_dcn_cpu.yaml", "bccd_mnv2_cpu.yaml"),
]
OVERFIT_STEPS = 40


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


@pytest.mark.parametrize("dcn,plain", DCN_PAIRS)
def test_each_dcn_config_is_its_plain_recipe_plus_dcn(dcn, plain):
    dcn_cfg, plain_cfg = _flat(config_to_dict(load_config(CONFIGS / dcn))), _flat(config_to_dict(load_config(CONFIGS / plain)))
    differences = {key: dcn_cfg[key] for key in dcn_cfg if dcn_cfg[key] != plain_cfg[key]}
    del differences["train.output_dir"]
    if dcn.startswith("bccd"):  # MobileNetV2: only the head towers can be deformable
        assert differences == {"model.head_dcn": True}
    else:  # ATSS's DCN setting: DCNv2 in ResNet stages C3-C5 and the last conv of both towers
        assert differences == {"model.dcn_levels": [3, 4, 5], "model.head_dcn": True}


def test_the_cpu_dcn_config_builds_and_steps():
    # anchor_scales: auto is resolved from the data by `train`; BCCD's choice is 4 x stride.
    cfg = load_config(CONFIGS / "bccd_mnv2_dcn_cpu.yaml",
                      ["model.pretrained=null", "model.num_classes=3", "model.anchor_scales=[4.0]"])
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    assert sum(isinstance(m, ModulatedDeformConv2d) for m in model.modules()) == 2
    batch = scene()
    result = build_criterion(cfg, model)(model(batch.images), batch, progress=0.0)
    result.total.backward()
    assert torch.isfinite(result.total) and result.stats["num_pos"] > 0
    assert model.head.cls_tower[-3].offset_mask.weight.grad.abs().sum() > 0


def test_a_tiny_dcn_model_overfits_one_image():
    """resnet18 with DCN in its last stage and in both head towers; stages up to C4 frozen so that
    the test stays CPU-cheap (the DCN layers, the neck and the head train)."""
    torch.manual_seed(0)
    model = build_detector(ModelConfig(
        backbone="resnet18", pretrained=None, frozen_stages=3, fpn_channels=32, head_channels=64, head_convs=2,
        num_classes=2, min_level=3, max_level=5, anchor_scales=[4.0], dcn_levels=[5], head_dcn=True,
    ))
    criterion = DetectionCriterion(AssignConfig(mode="dynamic"), ATSSTerms(LossConfig(classification="qfl"), quality="iou"))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = scene()
    losses = []  # classification + box: the quality BCE has a non-zero floor with soft targets
    for step in range(OVERFIT_STEPS):
        loss = criterion(model(batch.images), batch, progress=step / OVERFIT_STEPS)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
        losses.append((loss.terms["loss_cls"] + loss.terms["loss_box"]).item())
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5, losses[::10]
    deformable = [m for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
    assert len(deformable) == 4 + 2 and all(m.offset_mask.weight.abs().max() > 1e-3 for m in deformable)

    model.eval()
    with torch.no_grad():
        detections = postprocess_to_original(model(batch.images), batch.image_sizes, batch.original_sizes, InferenceConfig())[0]
    for gt_box, gt_label in zip(batch.gt_boxes[0], batch.gt_labels[0]):
        same_class = detections["labels"] == gt_label
        assert same_class.any()
        top_score_box = detections["boxes"][same_class][detections["scores"][same_class].argmax()]
        assert box_iou(top_score_box[None], gt_box[None]).item() > 0.7, "the best-scored box is found"
