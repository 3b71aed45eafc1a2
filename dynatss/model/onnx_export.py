"""ONNX export of the whole detector, post-processing included, for any batch and image size.

Inputs: ``images`` [B, 3, H, W] float RGB in 0..255 (normalisation is inside the graph),
``image_sizes`` [B, 2] int64 (height, width) of each image before padding, ``score_threshold`` []
float32: the least final score (class x quality, the score ``Detector.predict`` reports and
thresholds) of a detection; the model's own candidate rule (``inference.score_threshold`` on the
class probability or the score) is fixed in the graph. So the graph at threshold t returns what
``Detector.predict(..., score_threshold=t)`` does (tests/api/test_one_path.py). Outputs, padded to D = max_detections per image: ``boxes`` [B, D, 4] xyxy in input
pixels (clipped to the image's size), ``scores`` [B, D] descending, ``labels`` [B, D] int64 (-1 in
padding rows), ``num_detections`` [B] int64. NMS becomes one ONNX NonMaxSuppression over the
batch. Resizing and mapping boxes back to the original image are the caller's job (docs/export.md).

The TorchScript-based exporter (``dynamo=False``) is used: it needs no extra package (the dynamo
exporter needs onnxscript) and knows torchvision's NMS symbolic.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import nms

from dynatss.atomic import atomic_path
from dynatss.config import DataConfig, InferenceConfig
from dynatss.data.records import DatasetMeta
from dynatss.errors import DynatssError
from dynatss.model.dcn import onnx_opset_for
from dynatss.model.detector import DetectionModel
from dynatss.model.postprocess import clip_boxes, top_candidates

# metadata_props keys of an exported model (docs/export.md); the reader is
# dynatss.api.backends.OnnxBackend, through :func:`read_metadata`.
META_CLASS_NAMES = "class_names"
META_CATEGORY_IDS = "category_ids"
META_INPUT = "input_spec"
META_INFERENCE = "inference"
META_VERSION = "dynatss_version"
# ONNX opset: 11+ has NonMaxSuppression; 17 is widely supported by runtimes. Models with
# deformable convs (model.dcn_levels, model.head_dcn) need 19, the first with DeformConv.
OPSET = 17
INPUT_NAMES = ["images", "image_sizes", "score_threshold"]
OUTPUT_NAMES = ["boxes", "scores", "labels", "num_detections"]
DYNAMIC_AXES = {
    "images": {0: "batch", 2: "height", 3: "width"},
    "image_sizes": {0: "batch"},
    "boxes": {0: "batch"},
    "scores": {0: "batch"},
    "labels": {0: "batch"},
    "num_detections": {0: "batch"},
}
PADDING_LABEL = -1  # label of the rows past num_detections
# Size of the example the graph is traced with; any size works once exported.
TRACE_SIZE = 128


def batched_nms_padded(
    boxes: Tensor, scores: Tensor, labels: Tensor, keep: Tensor, *, image_size: tuple, iou_threshold: float,
    max_detections: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Class-aware NMS of every image at once, the best ``max_detections`` per image, padded.

    boxes [B, K, 4] inside the padded ``image_size`` (H, W), scores [B, K], labels [B, K], keep [B, K]
    (candidates). Returns boxes [B, D, 4], scores [B, D], labels [B, D] (padding: 0, 0, -1) and
    num_detections [B]. One NMS for the batch: boxes are shifted by (label * (W + 1)) in x and
    (image * (H + 1)) in y, so boxes of different images or classes never overlap, and shifts stay
    as small as torchvision's batched_nms uses for one image (float32 IoUs keep their precision).
    """
    num_images, num_candidates = scores.shape
    height, width = image_size
    image_index = torch.arange(num_images, device=boxes.device)[:, None].expand(-1, num_candidates)  # [B, K]
    boxes, scores, labels, image_index = boxes[keep], scores[keep], labels[keep], image_index[keep]  # [M, ...]
    shift_x = labels.to(boxes.dtype) * (width + 1)
    shift_y = image_index.to(boxes.dtype) * (height + 1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1)  # [M, 4]
    kept = nms(boxes + shifts, scores, iou_threshold)  # [M'] by decreasing score
    boxes, scores, labels, image_index = boxes[kept], scores[kept], labels[kept], image_index[kept]
    # Rank of each detection inside its image (they come by decreasing score): the padded row.
    in_image = (image_index[:, None] == torch.arange(num_images, device=boxes.device)[None]).long()  # [M', B]
    rank = in_image.cumsum(0).gather(1, image_index[:, None]).squeeze(1) - 1  # [M']
    within = rank < max_detections
    row = (image_index * max_detections + rank)[within]  # [N] rows of the flat [B * D] output
    flat_size = num_images * max_detections
    out_boxes = boxes.new_zeros((flat_size, 4)).scatter(0, row[:, None].expand(-1, 4), boxes[within])
    out_scores = scores.new_zeros((flat_size,)).scatter(0, row, scores[within])
    out_labels = labels.new_full((flat_size,), PADDING_LABEL).scatter(0, row, labels[within])
    num_detections = in_image.sum(0).clamp(max=max_detections)  # [B]
    return (
        out_boxes.view(num_images, max_detections, 4),
        out_scores.view(num_images, max_detections),
        out_labels.view(num_images, max_detections),
        num_detections,
    )


class ExportableDetector(nn.Module):
    """The detection model + post-processing of a padded batch:
    (images [B, 3, H, W], image_sizes [B, 2], score_threshold []) -> boxes, scores, labels, num_detections.

    Candidate selection, decoding and clipping are dynatss.model.postprocess's own functions
    (``score_threshold``: their ``min_score``); only the NMS is batched (:func:`batched_nms_padded`),
    with the same per-image result.
    """

    def __init__(self, model: DetectionModel, *, inference_cfg: InferenceConfig) -> None:
        super().__init__()
        self.model = model
        self.inference_cfg = inference_cfg

    def forward(self, images: Tensor, image_sizes: Tensor, score_threshold: Tensor) -> tuple[Tensor, ...]:
        # The threshold is an input of the graph: a float in eager mode, a graph input once traced.
        cfg = self.inference_cfg
        boxes, scores, labels, keep = top_candidates(self.model(images), cfg, min_score=score_threshold)  # [B, K, ...]
        boxes = clip_boxes(boxes, image_sizes)  # [B, K, 4]
        return batched_nms_padded(
            boxes, scores, labels, keep, image_size=(images.shape[-2], images.shape[-1]),
            iou_threshold=cfg.nms_threshold, max_detections=cfg.max_detections,
        )


def export_onnx(
    model: DetectionModel,
    path: str | Path,
    *,
    inference_cfg: InferenceConfig,
    metadata: dict[str, Any] | None = None,
    height: int = TRACE_SIZE,
    width: int = TRACE_SIZE,
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (atomically); return the path.

    The graph takes any batch size and image size; ``height`` x ``width`` is only the size it is
    traced at. ``metadata`` goes into the model's ``metadata_props`` (values that are not strings
    are stored as JSON): class names and the input spec, so a runtime needs no other file.
    """
    import onnx

    path = Path(path)
    if height <= 0 or width <= 0:
        raise DynatssError(f"{path}: export size must be positive, got {height}x{width}")
    if not path.parent.is_dir():
        raise DynatssError(f"{path}: output folder does not exist")
    # Trace on CPU in eval mode; the caller's device and train/eval mode are restored afterwards.
    device = next(model.parameters()).device
    was_training = model.training
    wrapper = ExportableDetector(model, inference_cfg=inference_cfg).cpu().eval()
    example = (
        torch.zeros(2, 3, height, width),  # two images: the batch axis is not specialised to 1
        torch.tensor([[height, width]] * 2),
        torch.tensor(0.0, dtype=torch.float32),
    )
    try:
        with atomic_path(path) as temporary:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # deprecation and tracer warnings
                torch.onnx.export(
                    wrapper, example, str(temporary), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                    dynamic_axes=DYNAMIC_AXES, opset_version=onnx_opset_for(model, OPSET), dynamo=False,
                )
            _write_metadata(temporary, metadata or {}, onnx)
    finally:
        model.to(device).train(was_training)
    return path


def _write_metadata(path: Path, metadata: dict[str, Any], onnx) -> None:
    graph = onnx.load(str(path))
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(graph, str(path))


def input_spec(data: DataConfig) -> dict[str, Any]:
    """What a runtime must do before the graph (stored in the ONNX metadata): exactly
    dynatss.model.inference.prepare_images."""
    return {
        "layout": "NCHW",
        "color": "RGB",
        "dtype": "float32",
        "range": [0, 255],
        "normalization": "inside the graph",
        "test_min_size": data.test_min_size,
        "max_size": data.max_size,
        "size_divisibility": data.size_divisibility,
        "resize": "shorter side to test_min_size, longer side at most max_size, aspect ratio kept, "
        "bilinear with antialiasing (torchvision.transforms.v2.functional.resize, PIL's BILINEAR); "
        "pad bottom/right with zeros to a multiple of size_divisibility; image_sizes = (h, w) before padding",
    }


def onnx_metadata(data: DataConfig, inference: InferenceConfig, meta: DatasetMeta, version: str) -> dict[str, Any]:
    """What the ONNX file carries besides the graph: classes, input spec, post-processing settings."""
    return {
        META_CLASS_NAMES: list(meta.class_names),
        META_CATEGORY_IDS: [int(i) for i in meta.category_ids],
        META_INPUT: input_spec(data),
        META_INFERENCE: dataclasses.asdict(inference),
        META_VERSION: version,
    }


def read_metadata(props: dict[str, str], source: str | Path) -> tuple[DatasetMeta, DataConfig, InferenceConfig]:
    """Classes, input geometry and inference settings from an exported file's ``metadata_props``."""
    try:
        names = json.loads(props[META_CLASS_NAMES])
        ids = json.loads(props[META_CATEGORY_IDS])
        spec = json.loads(props[META_INPUT])
        inference = InferenceConfig(**json.loads(props[META_INFERENCE]))
        data = DataConfig(test_min_size=int(spec["test_min_size"]), max_size=int(spec["max_size"]),
                          size_divisibility=int(spec["size_divisibility"]))
        return DatasetMeta(tuple(names), tuple(ids)), data, inference
    except (KeyError, ValueError, TypeError) as error:
        raise DynatssError(
            f"{source}: not exported by dynatss export (metadata lacks {error}); export it again"
        ) from None
