"""ONNX export of the whole detector, post-processing included, for one fixed input size.

Input ``images`` [1, 3, H, W] float RGB in 0..255 (normalisation is inside the graph). Outputs
``boxes`` [N, 4] xyxy in input pixels (clipped to H x W), ``scores`` [N], ``labels`` [N] int64
contiguous, N <= max_detections; NMS becomes ONNX NonMaxSuppression. Resizing the image to H x W
and mapping boxes back to the original image is the caller's job (docs/export.md).

The TorchScript-based exporter (``dynamo=False``) is used: it needs no extra package (the dynamo
exporter needs onnxscript) and knows torchvision's NMS symbolic.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from dynatss.atomic import atomic_path
from dynatss.config import InferenceConfig
from dynatss.errors import DynatssError
from dynatss.model.detector import DetectionModel
from dynatss.model.postprocess import postprocess

# ONNX opset: 11+ has NonMaxSuppression; 17 is widely supported by runtimes.
OPSET = 17
INPUT_NAMES = ["images"]
OUTPUT_NAMES = ["boxes", "scores", "labels"]


class ExportableDetector(nn.Module):
    """The detection model + post-processing for one image of fixed size: images [1, 3, H, W] -> boxes, scores, labels."""

    def __init__(self, model: DetectionModel, *, height: int, width: int, inference_cfg: InferenceConfig) -> None:
        super().__init__()
        self.model = model
        self.inference_cfg = inference_cfg
        self.register_buffer("image_sizes", torch.tensor([[height, width]]), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        outputs = self.model(images)
        detections = postprocess(
            outputs, self.image_sizes, self.image_sizes, self.inference_cfg, self.model.box_coder
        )[0]
        return detections["boxes"], detections["scores"], detections["labels"]


def export_onnx(
    model: DetectionModel, path: str | Path, *, height: int, width: int, inference_cfg: InferenceConfig
) -> Path:
    """Write ``model`` (in eval mode, on CPU) as an ONNX file at ``path`` atomically; return the path."""
    path = Path(path)
    if height <= 0 or width <= 0:
        raise DynatssError(f"{path}: export size must be positive, got {height}x{width}")
    if not path.parent.is_dir():
        raise DynatssError(f"{path}: output folder does not exist")
    # Trace on CPU in eval mode; the caller's device and train/eval mode are restored afterwards.
    device = next(model.parameters()).device
    wrapper = ExportableDetector(model, height=height, width=width, inference_cfg=inference_cfg)
    was_training = model.training
    wrapper.cpu().eval()
    example = torch.zeros(1, 3, height, width)
    try:
        with atomic_path(path) as tmp_path, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # deprecation and tracer warnings about constant shapes
            torch.onnx.export(
                wrapper,
                (example,),
                str(tmp_path),
                input_names=INPUT_NAMES,
                output_names=OUTPUT_NAMES,
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        model.to(device).train(was_training)
    return path
