import numpy as np
import onnxruntime
import pytest
import torch

from dynatss.config import InferenceConfig
from dynatss.errors import DynatssError
from dynatss.model.build import build_detector
from dynatss.model.export import export_onnx
from dynatss.model.postprocess import postprocess

HEIGHT, WIDTH = 128, 160


def test_onnx_matches_pytorch(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = build_detector(tiny_config(backbone="mobilenet_v2")).eval()
    with torch.no_grad():  # spread scores and boxes so thresholding and NMS have work to do
        model.head.cls_logits.bias.zero_()
        model.head.box_deltas.weight.normal_(std=0.1)
    cfg = InferenceConfig(score_threshold=0.25, pre_nms_topk=50, max_detections=100)
    path = export_onnx(model, tmp_path / "model.onnx", height=HEIGHT, width=WIDTH, inference_cfg=cfg)
    assert path == tmp_path / "model.onnx" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sizes = torch.tensor([[HEIGHT, WIDTH]])
    counts = set()
    for seed in range(3):
        images = torch.randint(0, 256, (1, 3, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(seed))
        images = images.float() * (seed + 1) / 3  # different brightness -> different detection counts
        with torch.no_grad():
            (expected,) = postprocess(model(images), sizes, sizes, cfg, model.box_coder)
        boxes, scores, labels = session.run(None, {"images": images.numpy()})
        assert 0 < len(scores) <= cfg.max_detections
        counts.add(len(scores))
        np.testing.assert_array_equal(labels, expected["labels"].numpy())
        np.testing.assert_allclose(scores, expected["scores"].numpy(), atol=1e-5)
        np.testing.assert_allclose(boxes, expected["boxes"].numpy(), atol=1e-3)
        assert boxes[:, [0, 2]].max() <= WIDTH and boxes[:, [1, 3]].max() <= HEIGHT and boxes.min() >= 0
    assert len(counts) > 1, counts  # the graph really has a data-dependent number of outputs
    assert model.training is False


def test_missing_output_folder_is_a_user_error(tmp_path, tiny_config):
    model = build_detector(tiny_config())
    with pytest.raises(DynatssError, match="does not exist"):
        export_onnx(model, tmp_path / "nope" / "m.onnx", height=64, width=64, inference_cfg=InferenceConfig())


def test_onnx_returns_no_detections_when_nothing_passes(tmp_path, tiny_config):
    """The number of detections is data-dependent, down to zero (NMS on an empty set)."""
    torch.manual_seed(0)
    model = build_detector(tiny_config(backbone="mobilenet_v2")).eval()
    with torch.no_grad():
        model.head.cls_logits.bias.zero_()
        model.head.cls_logits.weight.normal_(std=0.3)
    images = [
        torch.zeros(1, 3, HEIGHT, WIDTH),
        torch.randint(0, 256, (1, 3, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(0)).float(),
    ]
    with torch.no_grad():
        outputs = [model(x) for x in images]
    best = [(o.cls_logits.sigmoid() * o.quality_logits.sigmoid()[..., None]).max() for o in outputs]
    low, high = sorted(range(2), key=lambda i: best[i].item())
    threshold = (best[0] + best[1]).item() / 2  # only the `high` image has a candidate above it
    cfg = InferenceConfig(score_threshold=threshold, threshold_on="score")
    path = export_onnx(model, tmp_path / "model.onnx", height=HEIGHT, width=WIDTH, inference_cfg=cfg)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, labels = session.run(None, {"images": images[low].numpy()})
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)
    assert len(session.run(None, {"images": images[high].numpy()})[1]) >= 1
