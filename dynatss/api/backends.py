"""The two ways ``Detector`` runs a model: PyTorch (a checkpoint) or onnxruntime (an exported .onnx).

Both take ``[3, H_i, W_i]`` uint8 images, resize them with the evaluation resize, pad them into one
batch, run the detector with its post-processing, and return per-image detections (boxes in
original pixels) on the CPU. The ONNX graph holds the same post-processing (dynatss.model.export),
so the two agree up to float rounding (tests/api/test_onnx_backend.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dynatss.config import Config, DataConfig
from dynatss.data.records import DatasetMeta
from dynatss.errors import DynatssError
from dynatss.model.detector import DetectionModel
from dynatss.model.postprocess import Detections
from dynatss.tools.images import pad_batch, resize_for_test

# metadata_props keys of an exported model (docs/export.md).
META_CLASS_NAMES = "class_names"
META_CATEGORY_IDS = "category_ids"
META_INPUT = "input_spec"
META_INFERENCE = "inference"
META_VERSION = "dynatss_version"


class TorchBackend:
    """A PyTorch DetectionModel in eval mode on ``device``, with the config it was trained with."""

    def __init__(self, model: DetectionModel, config: Config, *, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.device = device

    def detect(self, images: list[Tensor]) -> list[Detections]:
        """Detections of the configured inference rule (``inference.score_threshold`` on candidates)."""
        from dynatss.tools.predict import detect

        return detect(self.model, images, self.config, device=self.device)


def input_spec(data: DataConfig) -> dict[str, Any]:
    """What a runtime must do before the graph (stored in the ONNX metadata)."""
    return {
        "layout": "NCHW",
        "color": "RGB",
        "dtype": "float32",
        "range": [0, 255],
        "normalization": "inside the graph",
        "test_min_size": data.test_min_size,
        "max_size": data.max_size,
        "size_divisibility": data.size_divisibility,
        "resize": "shorter side to test_min_size, longer side at most max_size, aspect ratio kept; "
        "pad bottom/right with zeros to a multiple of size_divisibility; image_sizes = (h, w) before padding",
    }


class OnnxBackend:
    """An exported detector in onnxruntime; class names and input spec read from its metadata."""

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
        self.meta, self.data, self.default_threshold = self._read_metadata()

    def _read_metadata(self) -> tuple[DatasetMeta, DataConfig, float]:
        props = self.session.get_modelmeta().custom_metadata_map
        try:
            names = json.loads(props[META_CLASS_NAMES])
            ids = json.loads(props[META_CATEGORY_IDS])
            spec = json.loads(props[META_INPUT])
            inference = json.loads(props[META_INFERENCE])
            data = DataConfig(
                test_min_size=int(spec["test_min_size"]), max_size=int(spec["max_size"]),
                size_divisibility=int(spec["size_divisibility"]),
            )
            return DatasetMeta(tuple(names), tuple(ids)), data, float(inference["score_threshold"])
        except (KeyError, ValueError, TypeError) as error:
            raise DynatssError(
                f"{self.path}: not exported by dynatss export (metadata lacks {error}); export it again"
            ) from None

    def detect(self, images: list[Tensor]) -> list[Detections]:
        """Detections of the exported inference rule (its candidate threshold from the metadata)."""
        resized = [resize_for_test(image, self.data) for image in images]
        batch = pad_batch(resized, size_divisibility=self.data.size_divisibility)  # [B, 3, H, W]
        image_sizes = torch.tensor([image.shape[-2:] for image in resized])  # [B, 2] (h, w)
        original_sizes = torch.tensor([image.shape[-2:] for image in images])  # [B, 2] (h, w)
        boxes, scores, labels, counts = self.session.run(None, {
            "images": batch.float().numpy(),
            "image_sizes": image_sizes.numpy(),
            "score_threshold": np.array(self.default_threshold, dtype=np.float32),
        })
        # Back to original pixels exactly as dynatss.model.postprocess does it.
        ratios = original_sizes.float() / image_sizes.float()  # [B, 2] (h, w)
        scale = torch.stack((ratios[:, 1], ratios[:, 0], ratios[:, 1], ratios[:, 0]), dim=-1)  # [B, 4]
        results = []
        for index, count in enumerate(counts.tolist()):
            results.append({
                "boxes": torch.from_numpy(boxes[index, :count]) * scale[index],
                "scores": torch.from_numpy(scores[index, :count]),
                "labels": torch.from_numpy(labels[index, :count]),
            })
        return results
