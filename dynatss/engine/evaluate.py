"""COCO-style evaluation: run the detector over a split, gather across ranks, score with faster-coco-eval.

Detections are converted to the dataset's own category ids (``meta.category_ids``) and to xywh
boxes in original-image pixels, so the JSON written is a standard COCO results file.
Metrics are fractions in [0, 1]; COCO reports -1 for a metric with no ground truth (e.g. APs when
there are no small objects, or every metric when the split has no boxes): shown as "n/a", never as
a number. Images the loader could not decode are left out of the scoring (their ground truth too).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from faster_coco_eval import COCO, COCOeval_faster
from torch import nn
from tqdm import tqdm

from dynatss.atomic import atomic_write_text
from dynatss.config import Config
from dynatss.data.batch import Batch
from dynatss.data.coco_io import records_to_coco
from dynatss.data.datasets import DatasetRead
from dynatss.data.loader import build_test_loader
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.engine.build import load_split, prepare_synthetic
from dynatss.engine.distributed import all_gather_objects
from dynatss.engine.precision import autocast_context
from dynatss.errors import DynatssError
from dynatss.model.inference import PreparedImages, detect_prepared
from dynatss.model.postprocess import Detections

# Detections of a prepared batch, in original pixels (dynatss.model.inference.detect_prepared, or
# an ONNX backend's equivalent).
DetectFn = Callable[[PreparedImages], list[Detections]]
# COCOeval's summary vector, in order (bbox, maxDets 1/10/100).
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class EvalResult:
    """metrics: {"AP", "AP50", ...} fractions; per_class: {class name: AP}; detections: COCO results;
    records: the images scored (those that could be decoded); meta: the dataset's classes and ids."""

    metrics: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, float] = field(default_factory=dict)
    detections: list[dict] = field(default_factory=list)
    records: list[ImageRecord] = field(default_factory=list)
    meta: DatasetMeta | None = None


def detections_to_coco(
    image_id: int, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, meta: DatasetMeta
) -> list[dict]:
    """One image's detections (xyxy original pixels, contiguous labels) as COCO result dicts."""
    boxes_xywh = boxes.detach().float().cpu().clone()  # [N, 4]
    boxes_xywh[:, 2:] -= boxes_xywh[:, :2]
    return [
        {
            "image_id": int(image_id),
            "category_id": int(meta.category_ids[int(label)]),
            "bbox": [round(float(v), 2) for v in box],
            "score": round(float(score), 5),
        }
        for box, score, label in zip(boxes_xywh.tolist(), scores.tolist(), labels.tolist())
    ]


def predict_split(detect: DetectFn, loader: Iterable[Batch], meta: DatasetMeta) -> dict[int, list[dict]]:
    """This rank's detections per image id: ``{image_id: [COCO result dict, ...]}``."""
    per_image: dict[int, list[dict]] = {}
    for batch in tqdm(loader, desc="eval", leave=False, dynamic_ncols=True, disable=None):
        prepared = PreparedImages(batch.images, batch.image_sizes, batch.original_sizes)
        for image_id, result in zip(batch.image_ids.tolist(), detect(prepared)):
            per_image[image_id] = detections_to_coco(
                image_id, result["boxes"], result["scores"], result["labels"], meta
            )
    return per_image


def model_detect(model: nn.Module, cfg: Config, device: torch.device) -> DetectFn:
    """:func:`~dynatss.model.inference.detect_prepared` of ``model`` (put in eval mode) with the
    config's inference rule and mixed precision."""
    model.eval()
    autocast = autocast_context(cfg, device)
    return lambda prepared: detect_prepared(model, prepared, cfg.inference, autocast=autocast)


def coco_metrics(
    gt: dict, detections: list[dict], meta: DatasetMeta
) -> tuple[dict[str, float], dict[str, float]]:
    """COCO box metrics and per-class AP (classes without ground truth are left out)."""
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO(gt, print_function=lambda *args, **kwargs: None)
        coco_dt = coco_gt.loadRes([dict(d) for d in detections])
        evaluator = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
        evaluator.run()
    stats = np.asarray(evaluator.stats, dtype=float)
    metrics = {name: float(value) for name, value in zip(METRIC_NAMES, stats)}
    # precision: [T IoU thresholds, R recall points, K classes, A area ranges, M max-dets]
    precision = np.asarray(evaluator.eval["precision"])
    category_index = {cat_id: k for k, cat_id in enumerate(evaluator.params.catIds)}
    per_class = {}
    for name, category_id in zip(meta.class_names, meta.category_ids):
        if category_id not in category_index:
            continue
        values = precision[:, :, category_index[category_id], 0, -1]
        values = values[values > -1]
        if values.size:
            per_class[name] = float(values.mean())
    return metrics, per_class


def evaluate(
    model: nn.Module,
    loader: Iterable[Batch],
    records: list[ImageRecord],
    meta: DatasetMeta,
    cfg: Config,
    device: torch.device,
) -> EvalResult:
    """:func:`evaluate_detect` of the plain (not DDP-wrapped) ``model``, left in the mode it was in."""
    was_training = model.training
    try:
        return evaluate_detect(model_detect(model, cfg, device), loader, records, meta)
    finally:
        model.train(was_training)


def evaluate_detect(detect: DetectFn, loader: Iterable[Batch], records: list[ImageRecord],
                    meta: DatasetMeta) -> EvalResult:
    """Detect on every image of ``loader``, gather all ranks' results, score them against ``records``.

    Under DDP every rank predicts its shard and rank 0 computes the metrics; the other ranks get an
    empty :class:`EvalResult`. Images that the sampler repeated to even out shards are counted once.
    """
    per_image = predict_split(detect, loader, meta)
    gathered = all_gather_objects(per_image)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return EvalResult()
    merged: dict[int, list[dict]] = {}
    for part in gathered:
        for image_id, detections in part.items():
            merged.setdefault(image_id, detections)
    detections = [d for image_id in sorted(merged) for d in merged[image_id]]
    seen = [record for record in records if record.image_id in merged]  # decoded images only
    metrics, per_class = coco_metrics(records_to_coco(seen, meta), detections, meta)
    return EvalResult(metrics=metrics, per_class=per_class, detections=detections, records=seen, meta=meta)


def split_records(cfg: Config, meta: DatasetMeta, split: str, *, is_main: bool = True) -> DatasetRead:
    """The images of ``split`` of the config's dataset, which must hold the model's classes ``meta``.

    Runs store ``data.root`` absolute; an older run's relative root is read from the current folder,
    and only if that data has the run's classes (else it is another run's data).
    """
    root = Path(cfg.data.root)
    where = root if root.is_absolute() else f"{root} (relative to {Path.cwd()}; the run does not record its folder)"
    if cfg.data.format == "synthetic" and not root.is_dir():  # generated once, then read as it is
        prepare_synthetic(cfg.data, is_main=is_main)
    elif not root.is_dir():
        raise DynatssError(f"data.root {where} no longer exists; the data of this run is gone")
    read = load_split(cfg.data, split)
    if tuple(read.meta.class_names) != tuple(meta.class_names):
        raise DynatssError(
            f"data.root {where} holds classes {list(read.meta.class_names)}, not this model's {list(meta.class_names)}"
        )
    if not read.records:
        raise DynatssError(f"{cfg.data.root}: no usable images in split '{split}'")
    return read


def evaluate_split(detect: DetectFn, cfg: Config, meta: DatasetMeta, split: str, *, rank: int = 0,
                   world_size: int = 1, dataset: DatasetRead | None = None) -> EvalResult:
    """COCO metrics of ``detect`` on ``split`` of the config's dataset (this rank's shard under DDP,
    scored on rank 0); ``dataset``: the split already read by :func:`split_records`. The loader
    resizes and pads with ``cfg.data``'s test settings."""
    dataset = dataset or split_records(cfg, meta, split, is_main=rank == 0)
    loader = build_test_loader(dataset.records, cfg.data, batch_size=cfg.data.test_batch_size,
                               rank=rank, world_size=world_size)
    return evaluate_detect(detect, loader, dataset.records, dataset.meta)


def write_detections(detections: list[dict], path: str | Path) -> Path:
    """Write a COCO results JSON (dataset category ids, xywh original pixels), atomically."""
    return atomic_write_text(path, json.dumps(detections))


def format_percent(value: float) -> str:
    """A COCO metric (fraction) in percent; "n/a" for COCO's -1 (no ground truth) or NaN."""
    return f"{100 * value:.2f}" if value >= 0 else "n/a"


def format_table(result: EvalResult) -> str:
    """The COCO summary and per-class AP as a plain-text table (percent, like the paper's tables)."""

    def percent(value: float) -> str:
        return f"{format_percent(value):>6}"

    names = METRIC_NAMES[:9]
    lines = [" ".join(f"{name:>6}" for name in names), " ".join(percent(result.metrics[n]) for n in names)]
    if result.per_class:
        width = max(len(name) for name in result.per_class)
        lines.append("")
        lines.append(f"{'class':<{width}}     AP")
        lines += [f"{name:<{width}} {percent(ap)}" for name, ap in result.per_class.items()]
    return "\n".join(lines)
