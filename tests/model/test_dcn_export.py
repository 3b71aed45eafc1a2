"""ONNX export of deformable convs: torchvision::deform_conv2d becomes ONNX DeformConv (opset 19),
and onnxruntime computes what PyTorch computes."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from dynatss.config import InferenceConfig
from dynatss.model.build import build_detector
from dynatss.model.dcn import DEFORM_CONV_OPSET, ModulatedDeformConv2d, onnx_opset_for
from dynatss.model.inference import postprocess_to_original
from dynatss.model.onnx_export import OPSET, export_onnx

HEIGHT, WIDTH = 96, 128


def _deform_offsets(model: torch.nn.Module, std: float) -> None:
    """Random offset/mask predictors: the samples really move (about a cell) and masks differ from 1."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ModulatedDeformConv2d):
                module.offset_mask.weight.normal_(std=std)
                module.offset_mask.bias.normal_(std=0.5)


@pytest.mark.parametrize("stride,groups,bias", [(1, 1, True), (2, 1, False), (1, 4, False)])
def test_a_deformable_conv_exports_as_deform_conv(tmp_path, stride, groups, bias):
    torch.manual_seed(0)
    conv = ModulatedDeformConv2d(in_channels=16, out_channels=8, stride=stride, groups=groups, bias=bias).eval()
    _deform_offsets(conv, std=0.05)
    features = torch.randn(1, 16, 13, 17)
    assert onnx_opset_for(conv, OPSET) == DEFORM_CONV_OPSET
    path = tmp_path / "conv.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(conv, (features,), str(path), opset_version=onnx_opset_for(conv, OPSET), dynamo=False)
    assert [node.op_type for node in onnx.load(str(path)).graph.node].count("DeformConv") == 1
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {session.get_inputs()[0].name: features.numpy()})
    with torch.no_grad():
        offsets, _ = conv.offset_mask(features)
        expected = conv(features)
    assert offsets.abs().max() > 1.0  # some samples move by more than a cell
    np.testing.assert_allclose(actual, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_plain_models_keep_the_default_opset(tiny_config):
    assert onnx_opset_for(build_detector(tiny_config()), OPSET) == OPSET


def test_a_dcn_detector_exports_and_matches_pytorch(tmp_path, tiny_config):
    """The whole detector (DCN in the last ResNet stage and in both head towers) with its
    post-processing, for two images of another size than the traced one. Offsets stay about a
    cell: through a chain of deformable convs with random weights, float rounding is amplified
    (float32 PyTorch differs from float64 PyTorch as much as onnxruntime does)."""
    torch.manual_seed(0)
    model = build_detector(tiny_config(dcn_levels=[5], head_dcn=True, head_convs=2)).eval()
    _deform_offsets(model, std=0.002)
    with torch.no_grad():  # spread scores and boxes so thresholding and NMS have work to do
        model.head.cls_logits.bias.zero_()
        model.head.box_deltas.weight.normal_(std=0.1)
    cfg = InferenceConfig(score_threshold=0.25, pre_nms_topk=50, max_detections=40)
    path = export_onnx(model, tmp_path / "model.onnx", inference_cfg=cfg)
    graph = onnx.load(str(path))
    # resnet18 layer4 (2 blocks x 2), then both towers once per pyramid level P3-P7.
    assert [node.op_type for node in graph.graph.node].count("DeformConv") == 4 + 2 * 5
    assert {(o.domain, o.version) for o in graph.opset_import} >= {("", DEFORM_CONV_OPSET)}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.randint(0, 256, (2, 3, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(0)).float()
    images[1] *= 0.6  # another brightness: another number of detections
    sizes = torch.tensor([[HEIGHT, WIDTH]] * 2)
    with torch.no_grad():
        expected = postprocess_to_original(model(images), sizes, sizes, cfg)
    boxes, scores, labels, counts = session.run(None, {
        "images": images.numpy(), "image_sizes": sizes.numpy(),
        "score_threshold": np.array(0.0, np.float32),  # no least score: every detection of cfg's rule
    })
    for index, want in enumerate(expected):
        count = counts[index]
        assert count == len(want["scores"]) > 0
        np.testing.assert_array_equal(labels[index, :count], want["labels"].numpy())
        np.testing.assert_allclose(scores[index, :count], want["scores"].numpy(), atol=1e-5)
        np.testing.assert_allclose(boxes[index, :count], want["boxes"].numpy(), atol=1e-3)
