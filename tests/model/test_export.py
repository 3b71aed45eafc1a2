"""ONNX export: one graph for any batch and image size, the same detections as PyTorch's post-processing."""

import json
import os
import stat

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torchvision.ops import batched_nms

from dynatss.config import InferenceConfig
from dynatss.errors import DynatssError
from dynatss.model.build import build_detector
from dynatss.model.inference import postprocess_to_original
from dynatss.model.onnx_export import PADDING_LABEL, batched_nms_padded, export_onnx
from tests.model.conftest import _tiny_config

CFG = InferenceConfig(score_threshold=0.25, pre_nms_topk=50, max_detections=40)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random MobileNetV2 detector with spread scores and boxes, and its ONNX export."""
    torch.manual_seed(0)
    model = build_detector(_tiny_config(backbone="mobilenet_v2")).eval()
    with torch.no_grad():  # spread scores and boxes so thresholding and NMS have work to do
        model.head.cls_logits.bias.zero_()
        model.head.box_deltas.weight.normal_(std=0.1)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert export_onnx(model, path, inference_cfg=CFG, metadata={"class_names": ["a", "b", "c"], "note": "x"}) == path
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return model, path, session


def _run(session, images, sizes, threshold):
    return session.run(None, {
        "images": images.numpy(), "image_sizes": sizes.numpy(), "score_threshold": np.array(threshold, np.float32)
    })


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 128, 160), (3, 96, 192), (3, 160, 96)])
def test_onnx_matches_pytorch_for_any_batch_and_size(exported, batch, height, width):
    model, _, session = exported
    generator = torch.Generator().manual_seed(batch * height)
    images = torch.randint(0, 256, (batch, 3, height, width), generator=generator).float()
    images *= torch.linspace(0.4, 1.0, batch).view(-1, 1, 1, 1)  # brightness -> different counts per image
    sizes = torch.tensor([[height, width]] * batch)
    sizes[-1] -= torch.tensor([32, 64 if width > 128 else 32])  # last image padded: clipped to its own size
    counted = []
    for threshold in (0.0, 0.15, 0.3):  # the graph's input is the least final score, as Detector.predict's
        with torch.no_grad():
            expected = postprocess_to_original(model(images), sizes, sizes, CFG, min_score=threshold)
        boxes, scores, labels, counts = _run(session, images, sizes, threshold)
        assert boxes.shape == (batch, CFG.max_detections, 4) and counts.shape == (batch,)
        for index, want in enumerate(expected):
            count = counts[index]
            assert count == len(want["scores"])
            counted.append((threshold, count))
            np.testing.assert_array_equal(labels[index, :count], want["labels"].numpy())
            np.testing.assert_allclose(scores[index, :count], want["scores"].numpy(), atol=1e-5)
            np.testing.assert_allclose(boxes[index, :count], want["boxes"].numpy(), atol=1e-3)
            assert (labels[index, count:] == PADDING_LABEL).all() and (scores[index, count:] == 0).all()
            h, w = sizes[index].tolist()
            assert count == 0 or (boxes[index, :count, [0, 2]].max() <= w and boxes[index, :count, [1, 3]].max() <= h)
    assert all(count > 0 for threshold, count in counted if threshold == 0.0)
    assert sum(count for threshold, count in counted if threshold == 0.3) < sum(c for t, c in counted if t == 0.0)


def test_threshold_input_down_to_no_detections(exported):
    _, _, session = exported
    images = torch.randint(0, 256, (2, 3, 96, 96), generator=torch.Generator().manual_seed(0)).float()
    sizes = torch.tensor([[96, 96], [96, 96]])
    _, _, low_labels, low = _run(session, images, sizes, 0.2)
    _, _, labels, none = _run(session, images, sizes, 1.0)
    assert (low > 0).all() and (none == 0).all() and (labels == PADDING_LABEL).all()


def test_metadata_and_file_mode(exported):
    _, path, _ = exported
    props = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    assert json.loads(props["class_names"]) == ["a", "b", "c"] and props["note"] == "x"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # a normal file, not a private temp file
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]


def test_batched_nms_equals_nms_per_image():
    """One NMS for the whole batch (shifted boxes) keeps what torchvision's batched_nms keeps per image."""
    generator = torch.Generator().manual_seed(0)
    num_images, num_boxes, max_detections = 3, 60, 8
    corners = torch.rand(num_images, num_boxes, 2, generator=generator) * 80
    sizes = 10 + torch.rand(num_images, num_boxes, 2, generator=generator) * 30
    boxes = torch.cat((corners, corners + sizes), dim=-1).clamp(max=100)  # [B, K, 4], heavily overlapping
    scores = torch.rand(num_images, num_boxes, generator=generator)
    labels = torch.randint(0, 3, (num_images, num_boxes), generator=generator)
    keep = scores > 0.3
    keep[2] = False  # an image without candidates
    out_boxes, out_scores, out_labels, counts = batched_nms_padded(
        boxes, scores, labels, keep, image_size=(100, 100), iou_threshold=0.5, max_detections=max_detections
    )
    for index in range(num_images):
        b, s, lab = boxes[index][keep[index]], scores[index][keep[index]], labels[index][keep[index]]
        kept = batched_nms(b, s, lab, 0.5)[:max_detections]
        count = counts[index].item()
        assert count == len(kept)
        torch.testing.assert_close(out_boxes[index, :count], b[kept])
        torch.testing.assert_close(out_scores[index, :count], s[kept])
        assert torch.equal(out_labels[index, :count], lab[kept])
        assert (out_labels[index, count:] == PADDING_LABEL).all() and (out_boxes[index, count:] == 0).all()
    assert counts.tolist()[:2] == [max_detections] * 2 and counts[2] == 0  # truncated; empty


def test_missing_output_folder_is_a_user_error(tmp_path, tiny_config):
    model = build_detector(tiny_config())
    with pytest.raises(DynatssError, match="does not exist"):
        export_onnx(model, tmp_path / "nope" / "m.onnx", inference_cfg=InferenceConfig())
