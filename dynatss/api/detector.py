"""``Detector``: the public Python API. Load a trained model, predict, evaluate, export, train.

    from dynatss import Detector
    det = Detector.from_checkpoint("runs/aquarium/checkpoints/best.pth")
    results = det.predict(["a.jpg", "imgs/", "clips/*.mp4", pil_image, numpy_hwc_uint8, tensor_chw])

Every command that loads weights (``predict``, ``eval``, ``export``, ``report``, ``assign``) builds
one of these; the model runs through dynatss.model.inference, the one inference path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from dynatss.api.backends import OnnxBackend, TorchBackend
from dynatss.api.inputs import InputImage, is_single_image, iter_inputs
from dynatss.api.result import Result
from dynatss.config import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DISPLAY_SCORE_THRESHOLD,
    Config,
    apply_overrides,
    load_config,
)
from dynatss.data.datasets import DatasetRead
from dynatss.data.records import DatasetMeta
from dynatss.engine.build import resolve_device
from dynatss.engine.evaluate import EvalResult, evaluate_split
from dynatss.engine.trained import load_trained, run_dir_of
from dynatss.errors import DynatssError
from dynatss.model.inference import DetectOptions

# Images per forward pass. 1: each image is padded only to its own size, so its detections do not
# depend on the other inputs (a batch pads every image to the largest; the head's GroupNorm then
# sees the padding). Larger batches trade that for throughput on a GPU.
DEFAULT_BATCH_SIZE = 1
# Failures a batch can hit that one image alone may not (a huge image running out of memory).
_BATCH_FAILURES = (RuntimeError, ValueError, MemoryError)


class Detector:
    """A trained detector. Build it with :meth:`from_checkpoint` (or :meth:`train`)."""

    def __init__(
        self,
        backend: TorchBackend | OnnxBackend,
        meta: DatasetMeta,
        *,
        weights: Path,
        config: Config | None,
        score_threshold: float = DISPLAY_SCORE_THRESHOLD,
    ) -> None:
        self.backend = backend
        self.meta = meta
        self.weights = weights
        # An ONNX model's graph holds what predicting needs; a config (given, or the run's config.yaml
        # beside RUN_DIR/checkpoints/) only names the data to evaluate on.
        self.config = config
        self.score_threshold = score_threshold

    @classmethod
    def from_checkpoint(
        cls,
        weights: str | Path,
        *,
        config: str | Path | Config | None = None,
        overrides: Sequence[str] = (),
        device: str = "auto",
        score_threshold: float = DISPLAY_SCORE_THRESHOLD,
    ) -> Detector:
        """Load a training checkpoint (``.pth``), a ``.safetensors`` export or an ``.onnx`` export.

        The config is the one saved with the weights unless ``config`` (a YAML file or a Config) is
        given; ``overrides`` (``"key.sub=value"``) apply on top. ``device``: "auto" (CUDA when
        available), "cpu", "cuda", "cuda:N". An ``.onnx`` file runs in onnxruntime with the input
        geometry and inference rule of its metadata; its config (for :meth:`evaluate`) is ``config``,
        else the run's ``config.yaml`` when the file sits in ``RUN_DIR/checkpoints/``.
        """
        weights = Path(weights)
        torch_device = resolve_device(device, setting="device")
        if weights.suffix == ".onnx":
            backend = OnnxBackend(weights, device=torch_device)
            cfg = _onnx_config(weights, config, tuple(overrides))
            return cls(backend, backend.meta, weights=weights, config=cfg, score_threshold=score_threshold)
        trained = load_trained(weights, torch_device, config=config, overrides=tuple(overrides))
        backend = TorchBackend(trained.model, trained.config, device=torch_device)
        return cls(backend, trained.meta, weights=weights, config=trained.config, score_threshold=score_threshold)

    @classmethod
    def train(
        cls, config: str | Path | Config, overrides: Sequence[str] = (), *, resume: bool = False
    ) -> Detector:
        """Train from a YAML config (or a Config) with ``"key.sub=value"`` overrides; return the
        detector of the run's best checkpoint (its last one when the run never evaluated)."""
        from dynatss.engine.checkpoint import BEST_NAME, LAST_NAME
        from dynatss.engine.train import train

        cfg = apply_overrides(config, tuple(overrides)) if isinstance(config, Config) else \
            load_config(config, tuple(overrides))
        result = train(cfg, resume=resume)
        checkpoints = result.run_dir / "checkpoints"
        best = checkpoints / BEST_NAME
        return cls.from_checkpoint(best if best.is_file() else checkpoints / LAST_NAME, device=cfg.train.device)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.meta.class_names

    @property
    def run_dir(self) -> Path:
        """The run directory of the weights (RUN_DIR for RUN_DIR/checkpoints/best.pth): where the
        commands write unless told otherwise."""
        return run_dir_of(self.weights)

    def __repr__(self) -> str:
        kind = "onnx" if isinstance(self.backend, OnnxBackend) else f"torch, {self.backend.device}"
        return f"Detector({self.weights}, {kind}, {len(self.class_names)} classes)"

    def options(self, score_threshold: float | None = None, nms_iou: float | None = None,
                classes: Sequence[int] | None = None, max_detections: int | None = None) -> DetectOptions:
        """One call's options, checked; ``score_threshold`` None: the detector's."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        for name, value in (("score_threshold", threshold), ("nms_iou", nms_iou)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise DynatssError(f"{name} must be in [0, 1], got {value}")
        if max_detections is not None and max_detections < 1:
            raise DynatssError(f"max_detections must be >= 1, got {max_detections}")
        if classes is not None and any(not 0 <= c < len(self.class_names) for c in classes):
            raise DynatssError(f"classes must be class indices in 0..{len(self.class_names) - 1}, got {list(classes)}")
        return DetectOptions(threshold, None if classes is None else tuple(classes), nms_iou, max_detections)

    def predict(self, inputs: Any, *, score_threshold: float | None = None, nms_iou: float | None = None,
                classes: Sequence[int] | None = None, max_detections: int | None = None,
                batch_size: int = DEFAULT_BATCH_SIZE, errors: Literal["raise", "keep"] = "raise",
                ) -> Result | list[Result]:
        """Detect objects in images: one :class:`Result` for a single image, else a list.

        Inputs: image files, folders, glob patterns, video files (one Result per frame; for long
        videos use :meth:`stream`), PIL images, numpy ``[H, W, 3]`` uint8 RGB arrays, torch
        ``[3, H, W]`` tensors (uint8, or float in 0..1), a ``[B, 3, H, W]`` tensor, or a list of any.

        Per call: ``score_threshold`` (the final score class x quality, the score shown; default the
        detector's, 0.3), ``nms_iou``, ``classes`` (class indices kept) and ``max_detections`` (None:
        the model's ``inference`` settings). ``errors``: "raise" (default) stops at the first input
        that cannot be read with its one-line DynatssError; "keep" gives that input a Result with
        ``.error`` set and no detections, and goes on, so the results stay aligned with the inputs.
        """
        results = list(self.stream(inputs, score_threshold=score_threshold, nms_iou=nms_iou, classes=classes,
                                   max_detections=max_detections, batch_size=batch_size, errors=errors))
        return results[0] if is_single_image(inputs) and len(results) == 1 else results

    def stream(self, inputs: Any, *, score_threshold: float | None = None, nms_iou: float | None = None,
               classes: Sequence[int] | None = None, max_detections: int | None = None,
               batch_size: int = DEFAULT_BATCH_SIZE, errors: Literal["raise", "keep"] = "raise",
               ) -> Iterator[Result]:
        """:meth:`predict` one Result at a time, reading each image as it is reached (videos,
        large folders): a generator."""
        if batch_size < 1:
            raise DynatssError(f"batch_size must be >= 1, got {batch_size}")
        if errors not in ("raise", "keep"):
            raise DynatssError(f"errors must be 'raise' or 'keep', got {errors!r}")
        options = self.options(score_threshold, nms_iou, classes, max_detections)
        pending: list[InputImage] = []
        for item in iter_inputs(inputs, max_pixels=self._max_pixels()):
            if item.error is not None:
                yield from self._detect(pending, options, errors)
                pending = []
                if errors == "raise":
                    raise DynatssError(item.error)
                yield Result.failed(item.source, item.error, self.meta, frame=item.frame)
                continue
            pending.append(item)
            if len(pending) == batch_size:
                yield from self._detect(pending, options, errors)
                pending = []
        yield from self._detect(pending, options, errors)

    def _max_pixels(self) -> int:
        return self.config.data.max_image_pixels if self.config is not None else DEFAULT_MAX_IMAGE_PIXELS

    def _detect(self, items: list[InputImage], options: DetectOptions, errors: str) -> Iterator[Result]:
        """Results of a batch; with ``errors="keep"`` a failing batch is retried image by image, so
        one bad image costs only itself."""
        if not items:
            return
        try:
            found = self.backend.detect([item.image for item in items], options)
        except _BATCH_FAILURES as error:
            if errors == "raise":
                raise
            if len(items) > 1:
                for item in items:
                    yield from self._detect([item], options, errors)
                return
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            yield Result.failed(items[0].source, f"{items[0].source or 'input'}: detection failed ({reason})",
                                self.meta, frame=items[0].frame)
            return
        for item, detections in zip(items, found):
            yield Result(detections["boxes"], detections["scores"], detections["labels"], item.image, item.source,
                         self.meta, frame=item.frame, time=item.time)

    def evaluate(self, split: str | None = None, *, rank: int = 0, world_size: int = 1,
                 dataset: DatasetRead | None = None) -> EvalResult:
        """COCO metrics on ``split`` (default ``data.val_split``) of the config's dataset, with every
        detection of the model's inference rule (no display threshold). Returns the metrics, the
        per-class AP, the COCO detections and the images scored; writes nothing (``dynatss eval``
        writes them). ``rank``/``world_size``: this process's shard under torchrun; ``dataset``: the
        split already read (dynatss.engine.evaluate.split_records)."""
        if self.config is None:
            raise DynatssError(f"{self.weights}: no config to evaluate with; give config=... (its data section)")
        split = split or self.config.data.val_split
        if isinstance(self.backend, OnnxBackend):
            detect = self.backend.detect_prepared
            config = _with_geometry(self.config, self.backend)
        else:
            detect, config = self.backend.detect_prepared, self.config
        return evaluate_split(detect, config, self.meta, split, rank=rank, world_size=world_size, dataset=dataset)

    def export(self, path: str | Path | None = None, *, format: str = "onnx") -> Path:
        """Write the model as ONNX (any batch and image size, post-processing inside) or
        safetensors (+ JSON sidecar); ``path`` defaults to the weights path with the new suffix."""
        from dynatss.api.export import export_model

        if isinstance(self.backend, OnnxBackend):
            raise DynatssError(f"{self.weights}: already an ONNX export")
        return export_model(self.backend.model, self.backend.config, self.meta, self.weights, format, out=path)


def _onnx_config(weights: Path, config: str | Path | Config | None, overrides: tuple[str, ...]) -> Config | None:
    """The config that names an ONNX model's data: ``config``, else the run's config.yaml if any."""
    if isinstance(config, Config):
        return apply_overrides(config, overrides)
    if config is None:
        saved = run_dir_of(weights) / "config.yaml"
        if not saved.is_file():
            if overrides:
                raise DynatssError(f"{weights}: no config to apply {overrides[0]!r} to (give config=...)")
            return None
        config = saved
    return load_config(config, overrides)


def _with_geometry(config: Config, backend: OnnxBackend) -> Config:
    """``config`` whose test resize and padding are the exported graph's (its metadata)."""
    data = replace(config.data, test_min_size=backend.data.test_min_size, max_size=backend.data.max_size,
                   size_divisibility=backend.data.size_divisibility)
    return replace(config, data=data, inference=backend.inference)
