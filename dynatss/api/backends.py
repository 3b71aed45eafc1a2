"""The two ways ``Detector`` runs a model: PyTorch (a checkpoint) or onnxruntime (an exported .onnx).

Both take ``[3, H_i, W_i]`` uint8 images through dynatss.model.inference: the same resize and
padding (:func:`prepare_images`), the same mapping of boxes back to original pixels
(:func:`to_original_pixels`). Between the two, PyTorch runs the forward pass and post-processing,
onnxruntime the exported graph that holds the same post-processing (dynatss.model.onnx_export), so
the two agree up to float rounding (tests/api/test_one_path.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dynatss.config import Config, DataConfig
from dynatss.errors import DynatssError
from dynatss.model.detector import DetectionModel
from dynatss.model.inference import (
    DetectOptions,
    PreparedImages,
    detect_prepared,
    keep_classes,
    prepare_images,
    to_original_pixels,
)
from dynatss.model.onnx_export import read_metadata
from dynatss.model.postprocess import Detections


class TorchBackend:
    """A PyTorch DetectionModel in eval mode on ``device``, with the config it was trained with."""

    def __init__(self, model: DetectionModel, config: Config, *, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.device = device

    @property
    def data(self) -> DataConfig:
        return self.config.data

    def detect_prepared(self, prepared: PreparedImages, options: DetectOptions = DetectOptions()) -> list[Detections]:
        return detect_prepared(self.model, prepared, self.config.inference, options=options)

    def detect(self, images: list[Tensor], options: DetectOptions = DetectOptions()) -> list[Detections]:
        """Detections (boxes in original pixels, on the CPU) of the configured inference rule."""
        return self.detect_prepared(prepare_images(images, self.data), options)


class OnnxBackend:
    """An exported detector in onnxruntime; class names, input spec and inference rule from its metadata."""

    def __init__(self, path: str | Path, *, device: torch.device, threads: int | None = None) -> None:
        """``threads``: onnxruntime's intra-op threads (None: its default, one per physical core)."""
        try:
            import onnxruntime
        except ImportError:
            raise DynatssError("running .onnx models needs onnxruntime: pip install 'dynatss[export]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise DynatssError(f"{self.path}: ONNX file not found")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = onnxruntime.SessionOptions()
        # Every graph optimisation (constant folding, Conv+Add/ReLU fusion, layout), as benchmarked.
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for unreadable files
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DynatssError(f"{self.path}: not a readable ONNX model ({message})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta, self.data, self.inference = read_metadata(props, self.path)

    def _check(self, options: DetectOptions) -> None:
        """The graph's NMS IoU and detections per image were fixed when it was exported."""
        for name, asked, fixed in (("nms_iou", options.nms_iou, self.inference.nms_threshold),
                                   ("max_detections", options.max_detections, self.inference.max_detections)):
            if asked is not None and asked != fixed:
                raise DynatssError(f"{self.path}: {name} is fixed at {fixed} in an ONNX export; export again "
                                   f"with inference.{'nms_threshold' if name == 'nms_iou' else name}={asked}")

    def run(self, prepared: PreparedImages, score_threshold: float) -> list[Detections]:
        """The graph's detections of a prepared batch, in input pixels (the raw ONNX output), with
        a final score of at least ``score_threshold``."""
        boxes, scores, labels, counts = self.session.run(None, {
            "images": prepared.images.float().contiguous().numpy(),
            "image_sizes": prepared.image_sizes.numpy(),
            "score_threshold": np.array(score_threshold, dtype=np.float32),
        })
        return [{"boxes": torch.from_numpy(boxes[i, :count]), "scores": torch.from_numpy(scores[i, :count]),
                 "labels": torch.from_numpy(labels[i, :count])} for i, count in enumerate(counts.tolist())]

    def detect_prepared(self, prepared: PreparedImages, options: DetectOptions = DetectOptions()) -> list[Detections]:
        self._check(options)
        found = []
        raw = self.run(prepared, options.score_threshold)
        for result, size, original in zip(raw, prepared.image_sizes, prepared.original_sizes):
            result["boxes"] = to_original_pixels(result["boxes"], size, original)
            # Classes are not a graph input: filtered after NMS, which keeps the same detections
            # unless an image had more than max_detections (docs/export.md).
            found.append(keep_classes(result, options.classes))
        return found

    def detect(self, images: list[Tensor], options: DetectOptions = DetectOptions()) -> list[Detections]:
        """Detections (boxes in original pixels) of the exported inference rule."""
        return self.detect_prepared(prepare_images(images, self.data), options)
