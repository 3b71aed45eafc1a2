"""ONNX export of GFLV2 / VFNet detectors (post-processing included), parity with PyTorch on CPU,
and the adaptation of their outputs to the shared post-processing."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from dynatss.config import InferenceConfig
from dynatss.model.build import build_detector
from dynatss.model.head_outputs import (
    QUALITY_ONE,
    GFLOutputs,
    VFNetOutputs,
    as_head_outputs,
    decode_gfl,
    decode_vfnet,
)
from dynatss.model.onnx_export import export_onnx
from dynatss.model.postprocess import postprocess
from tests.heads.conftest import tiny_config

HEIGHT, WIDTH = 96, 128


def _spread(model, head: str) -> None:
    """Spread scores and boxes of the random model so that thresholding and NMS have work to do."""
    with torch.no_grad():
        model.head.cls_logits.bias.zero_()
        if head == "gfl":
            model.head.reg_distribution.weight.normal_(std=0.05)
        else:
            model.head.reg_init.weight.normal_(std=0.05)
            model.head.reg_refine.weight.normal_(std=0.05)


@pytest.mark.parametrize("head", ["gfl", "vfnet"])
def test_onnx_matches_pytorch(tmp_path, head):
    """Batch 1 and 3 at two sizes through one exported graph (GFL's per-anchor strides follow the size)."""
    torch.manual_seed(0)
    model = build_detector(tiny_config(head)).eval()
    _spread(model, head)
    cfg = InferenceConfig(score_threshold=0.2, pre_nms_topk=50, max_detections=100)
    path = export_onnx(model, tmp_path / "model.onnx", inference_cfg=cfg)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, (height, width) in [(1, (HEIGHT, WIDTH)), (3, (WIDTH, HEIGHT))]:
        images = torch.randint(0, 256, (batch, 3, height, width), generator=torch.Generator().manual_seed(batch))
        sizes = torch.tensor([[height, width]] * batch)
        with torch.no_grad():  # the PyTorch side runs torchvision's deform_conv2d
            expected = postprocess(model(images.float()), sizes, sizes, cfg, model.box_coder)
        boxes, scores, labels, counts = session.run(None, {
            "images": images.float().numpy(), "image_sizes": sizes.numpy(),
            "score_threshold": np.array(cfg.score_threshold, np.float32),
        })
        for index, want in enumerate(expected):
            count = counts[index]
            assert 0 < count == len(want["scores"]) <= cfg.max_detections
            np.testing.assert_array_equal(labels[index, :count], want["labels"].numpy())
            np.testing.assert_allclose(scores[index, :count], want["scores"].numpy(), atol=1e-5)
            np.testing.assert_allclose(boxes[index, :count], want["boxes"].numpy(), atol=1e-3)


def _anchors(num: int) -> torch.Tensor:
    centres = torch.rand(num, 2, generator=torch.Generator().manual_seed(1)) * 100
    return torch.cat((centres - 16, centres + 16), dim=-1)  # [A, 4]


def test_adapted_gfl_outputs_score_and_decode_like_gfl():
    generator = torch.Generator().manual_seed(0)
    num = 12
    outputs = GFLOutputs(
        cls_logits=torch.randn(2, num, 3, generator=generator),
        reg_distribution=torch.randn(2, num, 4 * 17, generator=generator),
        quality_logits=torch.randn(2, num, generator=generator),
        anchors=_anchors(num), num_anchors_per_level=[8, 4], strides=[8, 16],
    )
    model = build_detector(tiny_config("gfl"))
    adapted = as_head_outputs(outputs, model.box_coder)
    torch.testing.assert_close(model.box_coder.decode(adapted.box_deltas, adapted.anchors), decode_gfl(outputs),
                               atol=1e-3, rtol=1e-5)
    score = adapted.cls_logits.sigmoid() * adapted.quality_logits.sigmoid()[..., None]
    torch.testing.assert_close(score, outputs.cls_logits.sigmoid() * outputs.quality_logits.sigmoid()[..., None])
    assert adapted.num_anchors_per_level == [8, 4]


def test_adapted_vfnet_outputs_score_by_the_iacs_alone():
    generator = torch.Generator().manual_seed(0)
    num = 10
    initial = 20 * torch.rand(1, num, 4, generator=generator)
    outputs = VFNetOutputs(
        cls_logits=torch.randn(1, num, 2, generator=generator), initial_ltrb=initial,
        refined_ltrb=initial * (0.5 + torch.rand(1, num, 4, generator=generator)),
        anchors=_anchors(num), num_anchors_per_level=[num], strides=[8],
    )
    model = build_detector(tiny_config("vfnet"))
    adapted = as_head_outputs(outputs, model.box_coder)
    assert torch.sigmoid(torch.tensor(QUALITY_ONE)).item() == 1.0
    torch.testing.assert_close(adapted.quality_logits.sigmoid(), torch.ones(1, num))
    torch.testing.assert_close(model.box_coder.decode(adapted.box_deltas, adapted.anchors), decode_vfnet(outputs),
                               atol=1e-3, rtol=1e-5)
    assert not torch.allclose(decode_vfnet(outputs), decode_vfnet(outputs, refined=False))
