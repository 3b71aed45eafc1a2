"""`dynatss assign`: show what ATSS and Dynamic ATSS assign on one of the user's own images.

The trained detector predicts boxes for the image at the test scale; its ground truth comes from a
small JSON file (``--annotations``), from a dataset (``--dataset``), or by default from the dataset
the run was trained on. The assignment is the training code's, with the run's ``assign`` settings
(plain ATSS is always shown beside it). Writes ``assign_STEM.png`` and ``assign_STEM.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dynatss.api.backends import TorchBackend
from dynatss.api.detector import Detector
from dynatss.assign.schedule import combination_weights, positive_cap
from dynatss.atomic import atomic_write_text
from dynatss.config import DISPLAY_SCORE_THRESHOLD, Config
from dynatss.data.datasets import detect_format, list_splits, read_dataset
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.data.transforms import load_image
from dynatss.errors import DynatssError
from dynatss.model.inference import prepare_images
from dynatss.reports.assign_figure import write_assignment_figure
from dynatss.reports.assign_trace import (
    AssignmentTrace,
    most_changed_gts,
    trace_assignment,
    trace_to_dict,
)

DEFAULT_MAX_GTS = 4
# A trained model is shown the assignment of the end of training (matters only for the D_up / D_down
# schedules and for a cap on positives that starts late, assign.max_positives_from).
TRAINED_PROGRESS = 1.0


@dataclass(frozen=True)
class GroundTruth:
    """The image's boxes to assign: [G, 4] xyxy original pixels and a class name per box."""

    boxes: Tensor
    class_names: list[str]


@dataclass(frozen=True)
class AssignView:
    trace: AssignmentTrace
    figure: Path
    numbers: Path
    table: str


def dynamic_weights(cfg: Config) -> tuple[float, float]:
    """(w_p, w_a) of the run's combined IoU; a run trained with plain ATSS is shown the paper's
    combined IoU with its configured weights, so the comparison is still there."""
    assign = cfg.assign if cfg.assign.mode != "atss" else dataclasses.replace(cfg.assign, mode="dynamic")
    return combination_weights(assign, TRAINED_PROGRESS)


def ground_truth_from_json(path: Path, image: Path) -> GroundTruth:
    """``[{"box": [x1, y1, x2, y2], "class_name": "..."}, ...]`` (original pixels), or predict's
    detections.json (the entry of ``image``)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DynatssError(f"{path}: not a readable JSON file ({error})") from None
    if isinstance(data, dict) and "images" in data:
        entries = [e for e in data["images"] if Path(str(e.get("file", ""))).name == image.name]
        if not entries:
            raise DynatssError(f"{path}: no entry for {image.name}")
        data = entries[0].get("detections", [])
    try:
        boxes = torch.tensor([[float(v) for v in obj["box"]] for obj in data], dtype=torch.float32).reshape(-1, 4)
        names = [str(obj.get("class_name", "object")) for obj in data]
    except (TypeError, KeyError, ValueError) as error:
        raise DynatssError(f"{path}: expected a list of {{\"box\": [x1, y1, x2, y2], \"class_name\": ...}} "
                           f"({error!r})") from None
    if not ((boxes[:, 2:] > boxes[:, :2]).all()):
        raise DynatssError(f"{path}: every box needs x2 > x1 and y2 > y1 (xyxy pixels)")
    return GroundTruth(boxes, names)


def ground_truth_from_dataset(root: Path, fmt: str | None, splits: list[str], image: Path) -> GroundTruth:
    """The annotations of ``image`` in the dataset at ``root``: the record whose file is ``image``
    (by resolved path) in any of ``splits`` (default: all); a bare file name found in no split by
    path is looked up by name, and must then be unique across the splits (else: give --split)."""
    fmt = fmt or detect_format(root)
    resolved = image.resolve()
    by_name: list[tuple[str, ImageRecord, DatasetMeta]] = []
    for split in splits or list_splits(fmt, root):
        dataset = read_dataset(fmt, root, split)
        for record in dataset.records:
            if Path(record.path).resolve() == resolved:
                return _from_record(record, dataset.meta)
            if Path(record.path).name == image.name:
                by_name.append((split, record, dataset.meta))
    if len(by_name) == 1:
        return _from_record(by_name[0][1], by_name[0][2])
    if by_name:
        found = ", ".join(sorted({split for split, _, _ in by_name}))
        raise DynatssError(f"{image}: a file of this name is in several splits ({found}); choose one with --split")
    raise DynatssError(f"{image}: not an image of the dataset {root} (splits {', '.join(splits) or 'all'})")


def _from_record(record: ImageRecord, meta: DatasetMeta) -> GroundTruth:
    kept = ~record.ignore  # crowd / difficult boxes are never assigned (they are ignore regions)
    boxes = torch.from_numpy(record.boxes[kept]).float().reshape(-1, 4)
    return GroundTruth(boxes, [meta.class_names[int(c)] for c in record.labels[kept]])


def view_assignment(detector: Detector, image_path: Path, truth: GroundTruth, out_dir: Path, *,
                    gts: list[int] | None = None, max_gts: int = DEFAULT_MAX_GTS) -> AssignView:
    """Run the detector on the image, trace both assignments, write the figure and the numbers
    (with the detector's own detections on the image, as ``predict`` finds them)."""
    if not isinstance(detector.backend, TorchBackend):
        raise DynatssError(f"{detector.weights}: assign needs the network's raw outputs: give a .pth or "
                           ".safetensors file, not an ONNX export")
    if len(truth.boxes) == 0:
        raise DynatssError(f"{image_path}: no ground-truth boxes to assign")
    if gts is not None and not all(0 <= g < len(truth.boxes) for g in gts):
        raise DynatssError(f"--gts: indices must be in 0..{len(truth.boxes) - 1}, got {gts}")
    cfg, model = detector.config, detector.backend.model
    original = load_image(image_path, max_pixels=cfg.data.max_image_pixels)
    prepared = prepare_images([original], cfg.data)
    height, width = prepared.image_sizes[0].tolist()
    scale = (original.shape[-1] / width, original.shape[-2] / height)  # (x, y) original pixels per input pixel
    gt_input = truth.boxes / torch.tensor([scale[0], scale[1], scale[0], scale[1]])  # [G, 4] input pixels
    device = detector.backend.device
    with torch.no_grad():
        outputs = model(prepared.images.to(device))
        pred_boxes = outputs.pred_boxes()[0].float()  # [A, 4], what the criterion assigns with
    pred_weight, anchor_weight = dynamic_weights(cfg)
    trace = trace_assignment(outputs.anchors.float(), outputs.num_anchors_per_level, gt_input.to(device), pred_boxes,
                             topk=cfg.assign.topk, pred_weight=pred_weight, anchor_weight=anchor_weight,
                             levels=cfg.assign.levels,
                             max_positives=positive_cap(cfg.assign, TRAINED_PROGRESS),
                             grids=outputs.level_grids)
    trace = _on_cpu(trace)
    shown = gts if gts is not None else sorted(most_changed_gts(trace, max_gts))
    stem = image_path.stem
    title = (f"{image_path.name}: ATSS vs combined IoU ({pred_weight:g} PIoU + {anchor_weight:g} AIoU), "
             f"top-{trace.topk} candidates per level")
    resized = prepared.images[0, :, :height, :width]
    figure = write_assignment_figure(trace, resized, shown, truth.class_names, out_dir / f"assign_{stem}.png",
                                     strides=list(model.strides), title=title)
    found = detector.predict(original, score_threshold=DISPLAY_SCORE_THRESHOLD)
    document = {
        "image": str(image_path), "input_size": [height, width], "scale_to_original": list(scale),
        "topk": trace.topk, "pred_weight": pred_weight, "anchor_weight": anchor_weight, "shown_gts": shown,
        "gts": trace_to_dict(trace, class_names=truth.class_names, scale=scale),
        "detections": found.detections(),
    }
    numbers = atomic_write_text(out_dir / f"assign_{stem}.json", json.dumps(document, indent=1) + "\n")
    return AssignView(trace, figure, numbers, assignment_table(trace, truth.class_names))


def _on_cpu(trace: AssignmentTrace) -> AssignmentTrace:
    return dataclasses.replace(trace, **{f.name: getattr(trace, f.name).cpu() for f in dataclasses.fields(trace)
                                         if isinstance(getattr(trace, f.name), Tensor)})


def assignment_table(trace: AssignmentTrace, class_names: list[str]) -> str:
    """Per GT: size, ATSS threshold and positives, combined threshold and positives, their mean PIoU."""
    header = (f"{'GT':>3}  {'class':<12} {'w x h':>9}  {'ATSS thr':>8} {'pos':>3}  "
              f"{'comb thr':>8} {'pos':>3}  {'PIoU pos':>8}")
    lines = [header]
    for g, box in enumerate(trace.gt_boxes.tolist()):
        positive = trace.dynamic_positive[g]
        piou = float(trace.pred_ious[g][positive].mean()) if positive.any() else float("nan")
        size = f"{box[2] - box[0]:.0f}x{box[3] - box[1]:.0f}"
        lines.append(f"{g:>3}  {class_names[g][:12]:<12} {size:>9}  {float(trace.atss_threshold[g]):>8.3f} "
                     f"{int(trace.atss_positive[g].sum()):>3}  {float(trace.dynamic_threshold[g]):>8.3f} "
                     f"{int(positive.sum()):>3}  {piou:>8.3f}")
    return "\n".join(lines)
