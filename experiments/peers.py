"""torchvision's FCOS and RetinaNet as peers of (Dynamic) ATSS, trained and scored exactly like ours.

Same backbone (our MobileNetV2 trunk: ImageNet weights, frozen stem + first stage, frozen BatchNorm),
same torchvision FPN over C3..C5 (no extra P6/P7 when ``model.max_level`` is 5), same head depth,
same data loader (resize to the shorter side, horizontal flip, seeds), same SGD, lr schedule
(``dynatss.engine.lr_schedule``), iterations and batch, and the same COCO evaluation
(``dynatss.engine.evaluate.coco_metrics``) on the same split.

Images reach torchvision *already resized and flipped* by our loader: :class:`ResizedInputTransform`
only normalises and pads them (torchvision's own resize is switched off), so both detectors see
identical pixels. Detections are scaled back to original-image pixels here, as our postprocess does.

Usage: ``python experiments/peers.py fcos CONFIG [key.sub=value ...]`` writes a run directory in the
engine's layout (config.yaml, metrics.jsonl with train lines and one final eval line, eval/
detections.json, checkpoints/last.pth) so that ``dynatss compare`` and experiments/ablation.py read it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelP6P7

from dynatss.config import Config, ModelConfig, config_to_dict, load_config, save_config
from dynatss.data.batch import Batch
from dynatss.data.coco_io import records_to_coco
from dynatss.data.loader import build_test_loader, build_train_loader
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.engine.build import load_split, with_num_classes
from dynatss.engine.checkpoint import meta_to_dict, save_checkpoint
from dynatss.engine.evaluate import (
    EvalResult,
    coco_metrics,
    detections_to_coco,
    format_table,
    write_detections,
)
from dynatss.engine.from_data import resolve_from_data
from dynatss.engine.lr_schedule import build_lr_scheduler
from dynatss.engine.optimizer import build_optimizer
from dynatss.engine.run_logger import RunLogger, WindowAverage
from dynatss.engine.train import seed_everything
from dynatss.errors import DynatssError
from dynatss.model.backbone import SPECS, Backbone
from dynatss.model.detector import IMAGENET_MEAN, IMAGENET_STD, PIXEL_MAX

PEERS = ("fcos", "retinanet")
# torchvision's loss names -> the engine's metrics.jsonl keys (so compare plots them side by side).
LOSS_KEYS = {"classification": "loss_cls", "bbox_regression": "loss_box", "bbox_ctrness": "loss_quality"}
# RetinaNet's anchors per location: 3 octave scales x 3 aspect ratios (Lin et al. 2017).
RETINANET_OCTAVES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
RETINANET_RATIOS = (0.5, 1.0, 2.0)
RETINANET_GROUPS = 32  # GroupNorm groups of torchvision's retinanet_resnet50_fpn_v2 head


class NoExtraLevels(ExtraFPNBlock):
    """BackboneWithFPN adds a max-pooled P6 unless given an extra block: this one adds nothing."""

    def forward(self, results: list[Tensor], x: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        return results, names


class ResizedInputTransform(GeneralizedRCNNTransform):
    """Normalise and pad only: our loader has already resized (and, in training, flipped) the images."""

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None):
        return image, target


def build_backbone_fpn(cfg: ModelConfig) -> BackboneWithFPN:
    """Our backbone trunk (weights, frozen stages, frozen BN) under torchvision's FPN, P{min}..P5, and
    P6-P7 from the P5 output (torchvision's LastLevelP6P7, as our neck) when ``max_level`` is 7."""
    if cfg.max_level not in (5, 7):
        raise DynatssError(f"peers use P{cfg.min_level}-P5 or P{cfg.min_level}-P7; got model.max_level={cfg.max_level}")
    levels = tuple(range(cfg.min_level, 6))
    backbone = Backbone(
        name=cfg.backbone, pretrained=cfg.pretrained, frozen_stages=cfg.frozen_stages,
        frozen_batchnorm=cfg.frozen_batchnorm, levels=levels,
    )
    taps = SPECS[cfg.backbone].taps
    return_layers = {taps[level - 3]: f"c{level}" for level in levels}
    extra = LastLevelP6P7(cfg.fpn_channels, cfg.fpn_channels) if cfg.max_level == 7 else NoExtraLevels()
    return BackboneWithFPN(backbone.body, return_layers, backbone.out_channels, cfg.fpn_channels, extra_blocks=extra)


def _head_depth(sequential: nn.Sequential, num_convs: int) -> nn.Sequential:
    """RetinaNet's towers are fixed at 4 convs; keep the first ``num_convs`` to match our head."""
    return nn.Sequential(*list(sequential)[:num_convs])


def build_peer(name: str, cfg: Config) -> nn.Module:
    """torchvision FCOS or RetinaNet on our MobileNetV2-FPN; labels are our contiguous 0..C-1."""
    model_cfg, inference = cfg.model, cfg.inference
    backbone = build_backbone_fpn(model_cfg)
    strides = [2**level for level in range(model_cfg.min_level, model_cfg.max_level + 1)]
    common = dict(
        num_classes=model_cfg.num_classes, min_size=cfg.data.test_min_size, max_size=cfg.data.max_size,
        score_thresh=inference.score_threshold, nms_thresh=inference.nms_threshold,
        detections_per_img=inference.max_detections, topk_candidates=inference.pre_nms_topk,
    )
    if name == "fcos":
        # FCOS anchors are points: one "anchor" per location, its size the stride (scale ranges).
        anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        head = FCOSHead(backbone.out_channels, 1, model_cfg.num_classes, num_convs=model_cfg.head_convs)
        model = FCOS(backbone, anchor_generator=anchors, head=head, **common)
    elif name == "retinanet":
        if model_cfg.anchor_scales == "auto":
            raise DynatssError("model.anchor_scales = auto is resolved from the data by train_peer; give a scale")
        base = model_cfg.anchor_scales[0]
        sizes = tuple(tuple(base * s * o for o in RETINANET_OCTAVES) for s in strides)
        anchors = AnchorGenerator(sizes, (RETINANET_RATIOS,) * len(strides))
        # GroupNorm in the towers as in our head and FCOS's (torchvision's RetinaNet v2 head).
        head = RetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], model_cfg.num_classes,
                             norm_layer=partial(nn.GroupNorm, RETINANET_GROUPS))
        head.classification_head.conv = _head_depth(head.classification_head.conv, model_cfg.head_convs)
        head.regression_head.conv = _head_depth(head.regression_head.conv, model_cfg.head_convs)
        model = RetinaNet(backbone, anchor_generator=anchors, head=head, **common)
    else:
        raise DynatssError(f"unknown peer '{name}' (choose from {list(PEERS)})")
    model.transform = ResizedInputTransform(
        cfg.data.test_min_size, cfg.data.max_size, list(IMAGENET_MEAN), list(IMAGENET_STD),
        size_divisible=cfg.data.size_divisibility,
    )
    return model


def peer_inputs(batch: Batch) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """A padded Batch -> torchvision's lists: images [3, h, w] in 0..1 (padding cropped), targets."""
    images, targets = [], []
    for i, (height, width) in enumerate(batch.image_sizes.tolist()):
        images.append(batch.images[i, :, :height, :width].float() / PIXEL_MAX)
        valid = batch.gt_valid[i]  # ignore boxes are not used: torchvision has no ignore regions
        targets.append({"boxes": batch.gt_boxes[i][valid], "labels": batch.gt_labels[i][valid]})
    return images, targets


def to_original_pixels(detections: list[dict[str, Tensor]], image_sizes: Tensor, original_sizes: Tensor) -> list[dict]:
    """torchvision detections (resized-image pixels) -> our Detections: boxes [N, 4] in original pixels."""
    ratios = original_sizes.float() / image_sizes.float()  # [B, 2] (h, w)
    results = []
    for detection, (ratio_h, ratio_w) in zip(detections, ratios.tolist()):
        scale = detection["boxes"].new_tensor([ratio_w, ratio_h, ratio_w, ratio_h])
        results.append({"boxes": detection["boxes"] * scale, "scores": detection["scores"],
                        "labels": detection["labels"]})
    return results


@torch.no_grad()
def detect(model: nn.Module, batch: Batch) -> list[dict[str, Tensor]]:
    """Detections per image in our format (boxes xyxy original pixels, scores, contiguous labels)."""
    model.eval()
    images, _ = peer_inputs(batch)
    return to_original_pixels(model(images), batch.image_sizes, batch.original_sizes)


def evaluate_peer(model: nn.Module, loader: Iterable[Batch], records: list[ImageRecord], meta: DatasetMeta) -> EvalResult:
    """The engine's COCO scoring (dataset category ids, original pixels) of the peer's detections."""
    detections = []
    for batch in loader:
        for image_id, result in zip(batch.image_ids.tolist(), detect(model, batch)):
            detections += detections_to_coco(image_id, result["boxes"], result["scores"], result["labels"], meta)
    metrics, per_class = coco_metrics(records_to_coco(records, meta), detections, meta)
    return EvalResult(metrics=metrics, per_class=per_class, detections=detections)


def peer_step(model: nn.Module, optimizer, scheduler, images: list[Tensor], targets: list[dict[str, Tensor]],
              clip_grad_norm: float | None, iteration: int,
              autocast=contextlib.nullcontext()) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """One SGD step of a torchvision detector: (total loss, its losses, gradient norm), still tensors.

    As the engine's step: the gradient norm is computed on every step (logged) and clipped to
    ``clip_grad_norm`` when set. Shared by training here and by benchmarks/train_step.py.
    """
    with autocast:
        losses = model(images, targets)
    total = sum(losses.values())
    if not math.isfinite(float(total.detach())):
        raise DynatssError(f"loss is {float(total.detach())} at iteration {iteration + 1}; stopped "
                           "(try a lower solver.base_lr)")
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm if clip_grad_norm is not None else math.inf)
    optimizer.step()
    scheduler.step()
    return total, losses, grad_norm


def _step(model, optimizer, scheduler, batch: Batch, cfg: Config, iteration: int) -> dict[str, float]:
    model.train()
    images, targets = peer_inputs(batch)
    total, losses, grad_norm = peer_step(model, optimizer, scheduler, images, targets,
                                         cfg.solver.clip_grad_norm, iteration)
    return {"loss": float(total.detach()), "grad_norm": float(grad_norm),
            **{LOSS_KEYS.get(k, k): float(v.detach()) for k, v in losses.items()}}


def train_peer(name: str, cfg: Config) -> EvalResult:
    """Train peer ``name`` with ``cfg``'s data, solver and seed into ``cfg.train.output_dir``; evaluate once."""
    if cfg.data.format == "synthetic":
        raise DynatssError("peers read real datasets only (data.format coco, voc or yolo)")
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    train_set = load_split(cfg.data, cfg.data.train_split)
    val_set = load_split(cfg.data, cfg.data.val_split)
    if not train_set.records or not val_set.records:
        raise DynatssError(f"{cfg.data.root}: train split '{cfg.data.train_split}' or val split "
                           f"'{cfg.data.val_split}' has no usable images")
    cfg = with_num_classes(cfg, train_set.meta)
    cfg, notes = resolve_from_data(cfg, train_set.records, train_set.meta)  # the recipe's schedule and anchors
    print("\n".join(notes), flush=True)
    run_dir = Path(cfg.train.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    model = build_peer(name, cfg)
    optimizer = build_optimizer(model, cfg.solver)
    scheduler = build_lr_scheduler(optimizer, cfg.solver)
    batches = build_train_loader(train_set.records, cfg.data, batch_size=cfg.solver.batch_size, seed=cfg.train.seed)
    solver = cfg.solver
    logger = RunLogger(run_dir, enabled=True, max_iter=solver.max_iter, start_iter=0)
    window = WindowAverage()
    try:
        for iteration in range(solver.max_iter):
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            values = _step(model, optimizer, scheduler, next(batches), cfg, iteration)
            window.add({"lr": lr, **values, "seconds": time.perf_counter() - started})
            logger.step()
            if (iteration + 1) % cfg.train.log_period == 0 or iteration + 1 == solver.max_iter:
                means = window.pop()
                means["images_per_s"] = solver.batch_size / max(means.pop("seconds"), 1e-9)
                logger.train(iteration + 1, means)
        loader = build_test_loader(val_set.records, cfg.data, batch_size=cfg.data.test_batch_size)
        result = evaluate_peer(model, loader, val_set.records, val_set.meta)
        logger.eval(solver.max_iter, result.metrics, result.per_class)
    finally:
        logger.close()
    save_checkpoint({"model": model.state_dict(), "peer": name, "iter": solver.max_iter,
                     "config": config_to_dict(cfg),
                     "meta": meta_to_dict(val_set.meta)}, run_dir / "checkpoints" / "last.pth")
    write_detections(result.detections, run_dir / "eval" / "detections.json")
    print(format_table(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="train and evaluate a torchvision peer detector")
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("config", help="YAML config (model backbone/FPN/head size, data, solver, train)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    args = parser.parse_args(argv)
    try:
        train_peer(args.peer, load_config(args.config, args.overrides))
    except DynatssError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

