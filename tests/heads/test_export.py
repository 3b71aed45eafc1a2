"""ONNX export of GFLV2 / VFNet detectors (post-processing included), parity with PyTorch on CPU,
and the adaptation of their outputs to the shared post-processing."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from dynatss.config import InferenceConfig
from dynatss.model.build import build_detector
from dynatss.model.inference import postprocess_to_original
from dynatss.model.onnx_export import export_onnx
from dynatss.model.outputs import GFLOutputs, VFNetOutputs
from dynatss.model.postprocess import detection_scores
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
            expected = postprocess_to_original(model(images.float()), sizes, sizes, cfg)
        boxes, scores, labels, counts = session.run(None, {
            "images": images.float().numpy(), "image_sizes": sizes.numpy(),
            "score_threshold": np.array(0.0, np.float32),  # no least score: every detection of cfg's rule
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


def test_gfl_outputs_decode_their_own_distributions_and_score_with_the_dgqp():
    generator = torch.Generator().manual_seed(0)
    num = 12
    outputs = GFLOutputs(
        cls_logits=torch.randn(2, num, 3, generator=generator),
        reg_distribution=torch.randn(2, num, 4 * 17, generator=generator),
        quality_logits=torch.randn(2, num, generator=generator),
        anchors=_anchors(num), num_anchors_per_level=[8, 4], strides=[8, 16],
    )
    boxes = outputs.pred_boxes()  # [2, A, 4]
    image_index, anchor_index = torch.tensor([[0], [1]]), torch.tensor([[3, 9], [0, 11]])
    torch.testing.assert_close(outputs.pred_boxes_at(image_index, anchor_index), boxes[image_index, anchor_index])
    # The expectation of each edge's distribution times its level's stride, from the anchor centre.
    bins = torch.arange(17, dtype=torch.float32)
    left = (outputs.reg_distribution[1, 11, :17].softmax(0) @ bins) * 16  # anchor 11 is on level 1
    centre_x = (outputs.anchors[11, 0] + outputs.anchors[11, 2]) / 2
    torch.testing.assert_close(boxes[1, 11, 0], centre_x - left)
    cls_probs, scores = detection_scores(outputs, InferenceConfig())
    torch.testing.assert_close(scores, cls_probs * outputs.quality_logits.sigmoid()[..., None])


def test_vfnet_outputs_score_by_the_iacs_alone_with_their_refined_boxes():
    generator = torch.Generator().manual_seed(0)
    num = 10
    initial = 20 * torch.rand(1, num, 4, generator=generator)
    outputs = VFNetOutputs(
        cls_logits=torch.randn(1, num, 2, generator=generator), initial_ltrb=initial,
        refined_ltrb=initial * (0.5 + torch.rand(1, num, 4, generator=generator)),
        anchors=_anchors(num), num_anchors_per_level=[num], strides=[8],
    )
    assert outputs.quality_scores() is None  # no quality branch, and no fake one
    cls_probs, scores = detection_scores(outputs, InferenceConfig(quality_exponent=2.0))
    assert torch.equal(scores, cls_probs) and torch.equal(cls_probs, outputs.cls_logits.sigmoid())
    centres = (outputs.anchors[:, :2] + outputs.anchors[:, 2:]) / 2
    torch.testing.assert_close(outputs.pred_boxes()[0, :, :2], centres - outputs.refined_ltrb[0, :, :2])
    index = torch.arange(num)
    assert not torch.allclose(outputs.pred_boxes()[0], outputs.initial_boxes_at(torch.zeros_like(index), index))
