"""Inference post-processing: head outputs -> per-image detections in original image pixels.

score = sigmoid(class logit) * sigmoid(quality logit) ** ``quality_exponent`` (ATSS ranks by class
score x centerness, the paper's IoU branch plays the same role; exponent 1 is the official product,
0 ranks by the class probability alone). Candidates are the (anchor, class) pairs whose
classification probability (``threshold_on="cls"``, the official ATSS / Dynamic ATSS rule) or
score (``"score"``) exceeds ``score_threshold``; per level the ``pre_nms_topk`` best-scoring
candidates are decoded, clipped to the resized image, and class-aware NMS keeps the best
``max_detections``. Shapes stay static up to the threshold (top-k over all pairs with
non-candidates ranked last, then the candidate mask), so the same code traces into ONNX.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from dynatss.config import InferenceConfig
from dynatss.model.box_coder import BoxCoder
from dynatss.model.head_outputs import GFLOutputs, VFNetOutputs, as_head_outputs
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


def select_candidates(
    outputs: HeadOutputs, cfg: InferenceConfig, box_coder: BoxCoder
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Top-k (anchor, class) pairs per level for every image, decoded.

    Returns boxes [B, K, 4] (padded input pixels), scores [B, K], labels [B, K], keep [B, K] bool
    (a candidate: above the threshold), K = sum over levels of min(pre_nms_topk, A_l * C).
    """
    num_classes = outputs.cls_logits.shape[-1]
    cls_probs = torch.sigmoid(outputs.cls_logits)  # [B, A, C]
    quality = torch.sigmoid(outputs.quality_logits)[..., None]  # [B, A, 1]
    scores = cls_probs * (quality if cfg.quality_exponent == 1 else quality.pow(cfg.quality_exponent))  # [B, A, C]
    is_candidate = (cls_probs if cfg.threshold_on == "cls" else scores) > cfg.score_threshold  # [B, A, C]
    # Scores lie in [0, 1]: NOT_CANDIDATE ranks every non-candidate below every candidate.
    ranking = scores.masked_fill(~is_candidate, NOT_CANDIDATE)  # [B, A, C]
    boxes_all, scores_all, labels_all = [], [], []
    start = 0
    for count in outputs.num_anchors_per_level:
        level_ranking = ranking[:, start : start + count].flatten(1)  # [B, A_l * C]
        k = at_most(level_ranking.shape[1], cfg.pre_nms_topk)
        top_scores, top_index = level_ranking.topk(k, dim=1)  # [B, k]
        anchor_index = top_index // num_classes + start  # [B, k]
        deltas = outputs.box_deltas.gather(1, anchor_index[..., None].expand(-1, -1, 4))  # [B, k, 4]
        boxes_all.append(box_coder.decode(deltas, outputs.anchors[anchor_index]))  # [B, k, 4]
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
    outputs: HeadOutputs | GFLOutputs | VFNetOutputs,
    image_sizes: Tensor,
    original_sizes: Tensor,
    cfg: InferenceConfig,
    box_coder: BoxCoder,
) -> list[Detections]:
    """Detections per image: boxes [N, 4] xyxy in ORIGINAL image pixels, scores [N], labels [N].

    image_sizes [B, 2] (h, w) of the resized images before padding; original_sizes [B, 2] (h, w).
    """
    outputs = as_head_outputs(outputs, box_coder)  # GFL / VFNet outputs as deltas + quality logits
    boxes, scores, labels, keep = select_candidates(outputs, cfg, box_coder)
    boxes = clip_boxes(boxes, image_sizes)  # [B, K, 4]
    ratios = original_sizes.to(boxes.dtype) / image_sizes.to(boxes.dtype)  # [B, 2] (h, w)
    scale = torch.stack((ratios[:, 1], ratios[:, 0], ratios[:, 1], ratios[:, 0]), dim=-1)  # [B, 4]
    results = []
    for i in range(boxes.shape[0]):
        image_boxes, image_scores, image_labels = boxes[i][keep[i]], scores[i][keep[i]], labels[i][keep[i]]
        kept = batched_nms(image_boxes, image_scores, image_labels, cfg.nms_threshold)[: cfg.max_detections]
        results.append(
            {
                "boxes": image_boxes[kept] * scale[i],
                "scores": image_scores[kept],
                "labels": image_labels[kept],
            }
        )
    return results
