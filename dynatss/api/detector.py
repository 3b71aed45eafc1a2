"""``Detector``: the public Python API. Load a trained model, predict, evaluate, export, train.

    from dynatss import Detector
    det = Detector.from_checkpoint("runs/aquarium/checkpoints/best.pth")
    results = det.predict(["a.jpg", pil_image, numpy_hwc_uint8, tensor_chw])

The command line (``dynatss predict | eval | export``) is a thin layer over these methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynatss.api.backends import OnnxBackend, TorchBackend
from dynatss.api.inputs import as_images, is_batch
from dynatss.api.result import Result
from dynatss.config import Config
from dynatss.data.records import DatasetMeta
from dynatss.errors import DynatssError

if TYPE_CHECKING:
    from dynatss.engine.evaluate import EvalResult
    from dynatss.tools.video import VideoPrediction

# Shown detections: a score of at least 0.3 (evaluation keeps everything above the config's 0.05,
# which is right for AP but clutters a picture).
DEFAULT_SCORE_THRESHOLD = 0.3
# Images per forward pass. 1: each image is padded only to its own size, so its detections do not
# depend on the other inputs (a batch pads every image to the largest; the head's GroupNorm then
# sees the padding). Larger batches trade that for throughput on a GPU.
DEFAULT_BATCH_SIZE = 1
# The frames of a video share one size, so batching them pads nothing.
VIDEO_BATCH_SIZE = 8


class Detector:
    """A trained detector. Build it with :meth:`from_checkpoint` (or :meth:`train`)."""

    def __init__(
        self,
        backend: TorchBackend | OnnxBackend,
        meta: DatasetMeta,
        *,
        weights: Path,
        config: Config | None,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    ) -> None:
        self.backend = backend
        self.meta = meta
        self.weights = weights
        self.config = config  # None for an ONNX model: its graph holds what predicting needs
        self.score_threshold = score_threshold

    @classmethod
    def from_checkpoint(
        cls,
        weights: str | Path,
        *,
        config: str | Path | Config | None = None,
        overrides: Sequence[str] = (),
        device: str = "auto",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    ) -> Detector:
        """Load a training checkpoint (``.pth``), a ``.safetensors`` export or an ``.onnx`` export.

        The config is the one saved in the checkpoint unless ``config`` (a YAML file or a Config) is
        given; ``overrides`` (``"key.sub=value"``) apply on top. ``device``: "auto" (CUDA when
        available), "cpu" or "cuda". An ``.onnx`` file runs in onnxruntime; it takes no config.
        """
        from dynatss.engine.build import resolve_device

        weights = Path(weights)
        torch_device = resolve_device(device)
        if weights.suffix == ".onnx":
            if config is not None or overrides:
                raise DynatssError(f"{weights}: an ONNX model takes no config (its graph holds it)")
            backend = OnnxBackend(weights, device=torch_device)
            return cls(backend, backend.meta, weights=weights, config=None, score_threshold=score_threshold)
        from dynatss.engine.inference import load_detector

        model, cfg, meta = load_detector(weights, torch_device, config=config, overrides=tuple(overrides))
        backend = TorchBackend(model, cfg, device=torch_device)
        return cls(backend, meta, weights=weights, config=cfg, score_threshold=score_threshold)

    @classmethod
    def train(
        cls, config: str | Path | Config, overrides: Sequence[str] = (), *, resume: bool = False
    ) -> Detector:
        """Train from a YAML config (or a Config) with ``"key.sub=value"`` overrides; return the
        detector of the run's best checkpoint (its last one when the run never evaluated)."""
        from dynatss.config import load_config
        from dynatss.engine.checkpoint import BEST_NAME, LAST_NAME
        from dynatss.engine.inference import apply_overrides
        from dynatss.engine.train import train

        if isinstance(config, Config):
            cfg = apply_overrides(config, tuple(overrides))
        else:
            cfg = load_config(config, tuple(overrides))
        result = train(cfg, resume=resume)
        checkpoints = result.run_dir / "checkpoints"
        best = checkpoints / BEST_NAME
        return cls.from_checkpoint(best if best.is_file() else checkpoints / LAST_NAME, device=cfg.train.device)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.meta.class_names

    def __repr__(self) -> str:
        kind = "onnx" if isinstance(self.backend, OnnxBackend) else f"torch, {self.backend.device}"
        return f"Detector({self.weights}, {kind}, {len(self.class_names)} classes)"

    def predict(
        self, inputs: Any, *, score_threshold: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Result | list[Result]:
        """Detect objects in one image or a list of images.

        Inputs: file paths, PIL images, numpy ``[H, W, 3]`` uint8 RGB arrays, torch ``[3, H, W]``
        tensors (uint8, or float in 0..1), or a ``[B, 3, H, W]`` tensor. One input gives one
        :class:`Result`, a list (or a batched tensor) a list. Detections scoring below
        ``score_threshold`` are left out; it defaults to the detector's (0.3 unless set in
        :meth:`from_checkpoint`). It applies to the final score (class x quality, the score shown),
        after the model's own inference rule (``inference.score_threshold`` on the candidates).
        """
        if batch_size < 1:
            raise DynatssError(f"batch_size must be >= 1, got {batch_size}")
        threshold = self.score_threshold if score_threshold is None else score_threshold
        images = as_images(inputs)
        results: list[Result] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            found = self.backend.detect([image for image, _ in chunk])
            for (image, source), detections in zip(chunk, found):
                shown = detections["scores"] >= threshold  # [N]
                results.append(Result(detections["boxes"][shown], detections["scores"][shown],
                                      detections["labels"][shown], image, source, self.meta))
        return results if is_batch(inputs) else results[0]

    def predict_video(
        self, path: str | Path, out_dir: str | Path, *, score_threshold: float | None = None,
        batch_size: int = VIDEO_BATCH_SIZE,
    ) -> VideoPrediction:
        """Detect in every frame of a video; write ``out_dir/<name>.mp4`` (drawn) and
        ``out_dir/<name>.jsonl`` (one JSON line per frame). Needs PyAV (``pip install 'dynatss[video]'``)."""
        from dynatss.tools.video import predict_video

        return predict_video(self, path, out_dir, score_threshold=score_threshold, batch_size=batch_size)

    def evaluate(self, split: str | None = None, *, output: str | Path | None = None) -> EvalResult:
        """COCO metrics on ``split`` (default ``data.val_split``) of the config's dataset; prints the
        table and writes the detections JSON (default ``RUN_DIR/eval/detections_<split>.json``)."""
        from dynatss.engine.commands import run_eval

        if self.config is None:
            raise DynatssError(f"{self.weights}: evaluate a .pth or .safetensors checkpoint, not an ONNX export")
        return run_eval(self.config, self.weights, split=split, output=output)

    def export(self, path: str | Path | None = None, *, format: str = "onnx") -> Path:
        """Write the model as ONNX (any batch and image size, post-processing inside) or
        safetensors (+ JSON sidecar); ``path`` defaults to the weights path with the new suffix."""
        from dynatss.tools.export import export_weights

        if self.config is None:
            raise DynatssError(f"{self.weights}: already an ONNX export")
        return export_weights(self.weights, format, out=path).path
