"""The one inference path: resize, pad, forward, post-process, boxes back to original pixels.

Every caller goes through these functions, so a box is never scaled two ways: ``Detector.predict``
and the ``predict`` command, video, ``report``'s samples, ``assign`` (its input and its
detections), evaluation (on the test loader's batches, resized and padded in the loader's workers
by the same two functions) and the ONNX backend (the exported graph replaces :func:`detect_prepared`'s
forward and post-processing; it prepares its input with :func:`prepare_images` and maps its boxes
back with :func:`to_original_pixels`).

    prepare_images     [3, H_i, W_i] uint8 images -> resized (data.transforms.resize_for_test) and
                       padded (data.batch.pad_images) into one [B, 3, H, W] batch, with both sizes
    detect_prepared    forward + post-processing + :func:`to_original_pixels`
    detect_images      the two above
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from dynatss.config import DataConfig, InferenceConfig
from dynatss.data.batch import pad_images
from dynatss.data.transforms import resize_for_test
from dynatss.model.postprocess import Detections, postprocess


@dataclass(frozen=True)
class PreparedImages:
    """A batch ready for the network.

    images:         [B, 3, H, W] uint8, resized and zero-padded at the bottom/right
    image_sizes:    [B, 2] int64 (height, width) of each resized image before padding
    original_sizes: [B, 2] int64 (height, width) of each original image
    """

    images: Tensor
    image_sizes: Tensor
    original_sizes: Tensor


@dataclass(frozen=True)
class DetectOptions:
    """Per-call choices on top of the model's inference rule: a minimum final score (class x
    quality, the score shown), the classes kept (None: all), and None for the config's NMS IoU
    and maximum detections per image."""

    score_threshold: float = 0.0
    classes: tuple[int, ...] | None = None
    nms_iou: float | None = None
    max_detections: int | None = None

    def inference(self, cfg: InferenceConfig) -> InferenceConfig:
        """``cfg`` with this call's NMS IoU and maximum detections."""
        nms = cfg.nms_threshold if self.nms_iou is None else self.nms_iou
        most = cfg.max_detections if self.max_detections is None else self.max_detections
        return replace(cfg, nms_threshold=nms, max_detections=most)


def image_sizes(images: list[Tensor]) -> Tensor:
    """[B, 2] int64 (height, width) of ``[3, H, W]`` images."""
    return torch.tensor([tuple(image.shape[-2:]) for image in images], dtype=torch.int64).reshape(-1, 2)


def prepare_images(images: list[Tensor], data_cfg: DataConfig) -> PreparedImages:
    """Resize ``[3, H_i, W_i]`` uint8 images to the test scale and pad them into one batch."""
    resized = [resize_for_test(image, data_cfg) for image in images]
    return PreparedImages(pad_images(resized, data_cfg.size_divisibility), image_sizes(resized), image_sizes(images))


def to_original_pixels(boxes: Tensor, image_size: Tensor, original_size: Tensor) -> Tensor:
    """Boxes [N, 4] xyxy in pixels of the resized image (``image_size`` (h, w)) -> pixels of the
    original image (``original_size`` (h, w)): x times w_orig / w, y times h_orig / h."""
    ratios = original_size.to(boxes.dtype) / image_size.to(boxes.dtype)  # [2] (h, w)
    return boxes * torch.stack((ratios[1], ratios[0], ratios[1], ratios[0]))


def float_outputs(outputs):
    """Head outputs (any NamedTuple) in fp32, so post-processing, assignment and losses never run in
    half precision."""
    return type(outputs)(*[t.float() if torch.is_tensor(t) and t.is_floating_point() else t for t in outputs])


def keep_classes(detections: Detections, classes: tuple[int, ...] | None) -> Detections:
    """The detections of ``classes`` only (None: all), for a runtime that cannot filter earlier."""
    if classes is None:
        return detections
    keep = torch.isin(detections["labels"], torch.tensor(classes, dtype=detections["labels"].dtype))
    return {key: value[keep] for key, value in detections.items()}


def class_mask(classes: tuple[int, ...] | None, num_classes: int, device: torch.device) -> Tensor | None:
    """[C] bool of the kept classes, None for all."""
    if classes is None:
        return None
    mask = torch.zeros(num_classes, dtype=torch.bool, device=device)
    mask[list(classes)] = True
    return mask


@torch.no_grad()
def detect_prepared(model: nn.Module, prepared: PreparedImages, inference_cfg: InferenceConfig, *,
                    options: DetectOptions = DetectOptions(),
                    autocast: contextlib.AbstractContextManager | None = None) -> list[Detections]:
    """Forward, post-processing and original pixels: one dict per image ("boxes" [N, 4] xyxy in
    original pixels, "scores" [N], "labels" [N]), on the CPU. ``model`` is in eval mode on its device."""
    device = next(model.parameters()).device
    with autocast or contextlib.nullcontext():
        outputs = model(prepared.images.to(device))
    mask = class_mask(options.classes, outputs.cls_logits.shape[-1], device)
    results = postprocess_to_original(float_outputs(outputs), prepared.image_sizes.to(device),
                                      prepared.original_sizes.to(device), options.inference(inference_cfg),
                                      min_score=options.score_threshold, class_mask=mask)
    return [{key: value.cpu() for key, value in result.items()} for result in results]


def postprocess_to_original(outputs, image_sizes: Tensor, original_sizes: Tensor, cfg: InferenceConfig, *,
                            min_score: float = 0.0, class_mask: Tensor | None = None) -> list[Detections]:
    """dynatss.model.postprocess.postprocess, then :func:`to_original_pixels`: detections per image
    with boxes [N, 4] xyxy in original pixels. image_sizes, original_sizes: [B, 2] (h, w)."""
    results = postprocess(outputs, image_sizes, cfg, min_score=min_score, class_mask=class_mask)
    return [{**result, "boxes": to_original_pixels(result["boxes"], image_size, original_size)}
            for result, image_size, original_size in zip(results, image_sizes, original_sizes)]


def detect_images(model: nn.Module, images: list[Tensor], data_cfg: DataConfig, inference_cfg: InferenceConfig, *,
                  options: DetectOptions = DetectOptions()) -> list[Detections]:
    """:func:`prepare_images` then :func:`detect_prepared`: detections of ``[3, H_i, W_i]`` uint8 images."""
    return detect_prepared(model, prepare_images(images, data_cfg), inference_cfg, options=options)
