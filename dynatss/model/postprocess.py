"""Inference post-processing: head outputs -> per-image detections in pixels of the resized input.

score = sigmoid(class logit) * quality ** ``quality_exponent``, with the head's quality score
(dynatss.model.outputs: the ATSS quality branch, GFLV2's DGQP; VFNet has none, its IoU-aware class
score is the score). ATSS ranks by class score x centerness, the paper's IoU branch plays the same
role; exponent 1 is the official product, 0 ranks by the class probability alone. Candidates are
the (anchor, class) pairs whose classification probability (``threshold_on="cls"``, the official
ATSS / Dynamic ATSS rule) or score (``"score"``) exceeds ``score_threshold``, and whose score is at
least the caller's ``min_score`` (the display threshold of ``Detector.predict``, a graph input of
the ONNX export), of the caller's classes; per level the ``pre_nms_topk`` best-scoring candidates
are decoded, clipped to the resized image, and class-aware NMS keeps the best ``max_detections``.
Filtering by ``min_score`` before NMS keeps exactly the detections that filtering after it would
(NMS only lets higher scores suppress lower ones). Shapes stay static up to the threshold (top-k over
all pairs with non-candidates ranked last, then the candidate mask), so the same code traces into
ONNX. dynatss.model.inference maps the boxes back to the original images.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from dynatss.config import InferenceConfig
from dynatss.model.outputs import HeadOutputs

# Ranking value of (anchor, class) pairs that are not candidates (scores are >= 0).
NOT_CANDIDATE = -1.0

Detections = dict[str, Tensor]  # "boxes" [N, 4] xyxy, "scores" [N], "labels" [N] int64


def at_most(count: int | Tensor, limit: int) -> int | Tensor:
    """min(count, limit). While tracing for ONNX ``count`` is a traced size (a 0-d tensor), and so is
    the result: top-k then takes as many candidates as the exported graph's input size allows."""
    if isinstance(count, Tensor):
        return count.clamp(max=limit)
    return min(count, limit)


def detection_scores(outputs: HeadOutputs, cfg: InferenceConfig) -> tuple[Tensor, Tensor]:
    """(class probabilities [B, A, C], detection scores [B, A, C]) of the inference rule."""
    cls_probs = torch.sigmoid(outputs.cls_logits)  # [B, A, C]
    quality = outputs.quality_scores()  # [B, A] or None
    if quality is None:
        return cls_probs, cls_probs
    quality = quality[..., None]  # [B, A, 1]
    return cls_probs, cls_probs * (quality if cfg.quality_exponent == 1 else quality.pow(cfg.quality_exponent))


def top_candidates(
    outputs: HeadOutputs, cfg: InferenceConfig, *, min_score: float | Tensor = 0.0, class_mask: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Top-k (anchor, class) pairs per level for every image, decoded.

    ``class_mask`` [C] bool: the classes kept (None: all). Returns boxes [B, K, 4] (padded input
    pixels), scores [B, K], labels [B, K], keep [B, K] bool (a candidate: above the thresholds),
    K = sum over levels of min(pre_nms_topk, A_l * C).
    """
    num_classes = outputs.cls_logits.shape[-1]
    cls_probs, scores = detection_scores(outputs, cfg)  # [B, A, C] each
    is_candidate = ((cls_probs if cfg.threshold_on == "cls" else scores) > cfg.score_threshold) & (scores >= min_score)
    if class_mask is not None:
        is_candidate = is_candidate & class_mask
    # Scores lie in [0, 1]: NOT_CANDIDATE ranks every non-candidate below every candidate.
    ranking = scores.masked_fill(~is_candidate, NOT_CANDIDATE)  # [B, A, C]
    image_index = torch.arange(ranking.shape[0], device=ranking.device)[:, None]  # [B, 1]
    boxes_all, scores_all, labels_all = [], [], []
    start = 0
    for count in outputs.num_anchors_per_level:
        level_ranking = ranking[:, start : start + count].flatten(1)  # [B, A_l * C]
        k = at_most(level_ranking.shape[1], cfg.pre_nms_topk)
        top_scores, top_index = level_ranking.topk(k, dim=1)  # [B, k]
        anchor_index = top_index // num_classes + start  # [B, k]
        boxes_all.append(outputs.pred_boxes_at(image_index, anchor_index))  # [B, k, 4]
        scores_all.append(top_scores)
        labels_all.append(top_index % num_classes)
        start += count
    scores = torch.cat(scores_all, dim=1)  # [B, K]
    return torch.cat(boxes_all, dim=1), scores, torch.cat(labels_all, dim=1), scores > NOT_CANDIDATE


def clip_boxes(boxes: Tensor, image_sizes: Tensor) -> Tensor:
    """Clip boxes [B, K, 4] to each image's (height, width) in ``image_sizes`` [B, 2]."""
    heights = image_sizes[:, 0].to(boxes.dtype)
    widths = image_sizes[:, 1].to(boxes.dtype)
    limits = torch.stack((widths, heights, widths, heights), dim=-1)[:, None, :]  # [B, 1, 4]
    return torch.minimum(boxes, limits).clamp(min=0)


def postprocess(
    outputs: HeadOutputs,
    image_sizes: Tensor,
    cfg: InferenceConfig,
    *,
    min_score: float = 0.0,
    class_mask: Tensor | None = None,
) -> list[Detections]:
    """Detections per image: boxes [N, 4] xyxy in pixels of the resized input (clipped to it),
    scores [N] descending, labels [N]. image_sizes [B, 2] (h, w) of the resized images before
    padding. dynatss.model.inference maps the boxes back to the original images.
    """
    boxes, scores, labels, keep = top_candidates(outputs, cfg, min_score=min_score, class_mask=class_mask)
    boxes = clip_boxes(boxes, image_sizes)  # [B, K, 4]
    results = []
    for i in range(boxes.shape[0]):
        image_boxes, image_scores, image_labels = boxes[i][keep[i]], scores[i][keep[i]], labels[i][keep[i]]
        kept = batched_nms(image_boxes, image_scores, image_labels, cfg.nms_threshold)[: cfg.max_detections]
        results.append({"boxes": image_boxes[kept], "scores": image_scores[kept], "labels": image_labels[kept]})
    return results
