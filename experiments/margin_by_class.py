"""Where one row's lead over another lives: per class, the paired AP difference beside what the
training set says of that class.

Issue 17 asks why Dynamic ATSS beats ATSS on some datasets and ties on others. This table puts
each class's paired AP difference (by seed, from the committed runs) beside the class's training
boxes: how many, their median side and shape at the training scale, and their median best centred
anchor IoU at the scale the recipe chose (``dynatss.model.anchor_choice``). A last line gives
Spearman's rank correlation of the difference with each of those, over every class of every
dataset listed. Nothing is trained; the data are read once per dataset.

    python experiments/margin_by_class.py --datasets bccd,aquarium,aerial_cars \
        --rows ciou_qfl_iou_uniform_cap50,gflv2_uniform,gflv2_ciou_uniform_cap50:gflv2_uniform --baseline atss --output docs/results/margin_by_class.md
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynatss.atomic import atomic_write_text
from dynatss.config import load_config
from dynatss.engine.build import load_split
from dynatss.engine.from_data import resolve_from_data, training_box_sizes
from dynatss.errors import DynatssError
from dynatss.model.anchor_choice import centred_anchor_iou
from experiments.ablation import BASE_CONFIG, RESULTS_DIR, ROOT, dataset_overrides
from experiments.paired import paired_difference
from experiments.results_doc import GRID_FILE, Row, collect, committed_seeds, read_json
from experiments.variants import find_variants


@dataclass(frozen=True)
class ClassBoxes:
    """One class of a training set at the training scale."""

    name: str
    train_boxes: int
    eval_boxes: int
    median_side: float  # sqrt(w h), pixels
    median_elongation: float  # |ln(w / h)|: 0 for a square, 0.69 for 2:1
    median_anchor_iou: float  # best centred anchor IoU over the levels


@dataclass(frozen=True)
class ClassMargin:
    """One class and its paired AP difference (None below two seeds that both rows have)."""

    boxes: ClassBoxes
    difference: tuple[float, float, int, int] | None  # paired_difference: mean, half-width, seeds, ahead


@dataclass
class PerClassRuns:
    """A variant's final per-class AP (fractions) by seed, shaped for ``paired_difference``."""

    metrics: dict[int, dict[str, float]]


def class_boxes(box_wh: np.ndarray, labels: np.ndarray, eval_labels: np.ndarray, class_names: list[str],
                anchor_sides: np.ndarray) -> list[ClassBoxes]:
    """Per class with training boxes: counts and medians of boxes [N, 2] (w, h) labelled [N]."""
    best_iou = centred_anchor_iou(box_wh, anchor_sides).max(axis=1)  # [N]
    side = np.sqrt(box_wh[:, 0] * box_wh[:, 1])  # [N]
    elongation = np.abs(np.log(box_wh[:, 0] / box_wh[:, 1]))  # [N]
    eval_counts = np.bincount(eval_labels, minlength=len(class_names))
    result = []
    for index, name in enumerate(class_names):
        mine = labels == index
        if mine.any():
            result.append(ClassBoxes(name, int(mine.sum()), int(eval_counts[index]), float(np.median(side[mine])),
                                     float(np.median(elongation[mine])), float(np.median(best_iou[mine]))))
    return result


def per_class_runs(row: Row) -> PerClassRuns:
    """A results row's final per-class AP by seed, COCO's -1 (no such class in that evaluation) dropped."""
    return PerClassRuns({seed: {name: value for name, value in per_class.items() if value >= 0}
                         for seed, per_class in row.per_class.items()})


def paired_by_class(row: PerClassRuns, baseline: PerClassRuns, name: str) -> tuple[float, float, int, int] | None:
    """``row`` minus ``baseline`` on one class, over the seeds where both have its AP."""
    shared = {s for s in set(row.metrics) & set(baseline.metrics) if name in row.metrics[s] and name in baseline.metrics[s]}
    return paired_difference(PerClassRuns({s: row.metrics[s] for s in shared}),
                             PerClassRuns({s: baseline.metrics[s] for s in shared}), name)


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties given their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks; NaN when either is constant."""
    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return statistics.correlation(ranks(x), ranks(y))


@functools.cache
def dataset_classes(dataset: str) -> tuple[ClassBoxes, ...]:
    """The classes of ``dataset``'s training set under the recipe, anchors resolved as a run resolves them."""
    cfg = load_config(BASE_CONFIG, dataset_overrides(dataset))
    train_set = load_split(cfg.data, cfg.data.train_split)
    eval_set = load_split(cfg.data, cfg.data.val_split)
    cfg, _ = resolve_from_data(cfg, train_set.records, train_set.meta)
    strides = np.asarray([2.0**level for level in range(cfg.model.min_level, cfg.model.max_level + 1)])
    box_wh, labels = training_box_sizes(train_set.records, cfg.data)
    eval_labels = np.concatenate([r.labels[~r.ignore] for r in eval_set.records] or [np.zeros(0, np.int64)])
    return tuple(class_boxes(box_wh, labels, eval_labels, list(train_set.meta.class_names),
                             cfg.model.anchor_scales[0] * strides))


def dataset_margins(dataset: str, results: Path, row: str, baseline: str) -> list[ClassMargin]:
    """Every class of ``dataset``'s training set with its paired difference in the committed runs."""
    grid = read_json(results / dataset / GRID_FILE)
    if grid is None:
        raise DynatssError(f"{results / dataset / GRID_FILE}: no grid here (run experiments/ablation.py first)")
    variants = find_variants([row, baseline])
    seeds = committed_seeds(results / dataset, variants, grid)
    rows, _ = collect(variants, seeds, results / dataset, grid["max_iter"])
    row_runs, baseline_runs = (per_class_runs(r) for r in rows)
    return [ClassMargin(boxes, paired_by_class(row_runs, baseline_runs, boxes.name)) for boxes in dataset_classes(dataset)]


def format_rho(rho: float) -> str:
    return "- (constant)" if math.isnan(rho) else f"{rho:+.2f}"


def render(margins: dict[str, list[ClassMargin]], row: str, baseline: str, results: Path) -> str:
    """One markdown table of every class, fewest training boxes first, and the rank correlations."""
    lines = [f"### `{row}` minus `{baseline}`", "", f"Per class: `{row}` minus `{baseline}`, AP (percent) paired by seed with its 95 % t interval, "
             f"from the runs in `{os.path.relpath(results.resolve(), ROOT)}`; the training boxes at the training scale, sorted by count.", "",
             "| dataset | class | training boxes | evaluation boxes | median side (px) | median abs(ln w/h) "
             "| median best anchor IoU | AP difference | ahead at |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    measured = []
    for dataset, classes in margins.items():
        for margin in sorted(classes, key=lambda m: m.boxes.train_boxes):
            boxes, difference = margin.boxes, margin.difference
            cell, ahead = "-", "-"
            if difference is not None:
                mean, half, seeds, wins = difference
                cell, ahead = f"{mean:+.1f} ({mean - half:+.1f}, {mean + half:+.1f})", f"{wins}/{seeds}"
                measured.append(margin)
            lines.append(f"| {dataset} | {boxes.name} | {boxes.train_boxes} | {boxes.eval_boxes} | "
                         f"{boxes.median_side:.0f} | {boxes.median_elongation:.2f} | {boxes.median_anchor_iou:.2f} | "
                         f"{cell} | {ahead} |")
    if len(measured) >= 3:
        gains = [m.difference[0] for m in measured]
        columns = {"training boxes": [m.boxes.train_boxes for m in measured],
                   "median side": [m.boxes.median_side for m in measured],
                   "elongation": [m.boxes.median_elongation for m in measured],
                   "best anchor IoU": [m.boxes.median_anchor_iou for m in measured]}
        rhos = ", ".join(f"{name} {format_rho(spearman(values, gains))}" for name, values in columns.items())
        lines += ["", f"Spearman's rank correlation of the AP difference with each column, over the "
                      f"{len(measured)} classes with a difference: {rhos}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="bccd,aquarium,aerial_cars", help="comma-separated")
    parser.add_argument("--rows", default="ciou_qfl_iou_uniform_cap50",
                        help="comma-separated variants, each against --baseline in its own table; "
                             "ROW:BASELINE gives one its own baseline")
    parser.add_argument("--baseline", default="atss", help="the variant it is paired with")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="committed runs")
    parser.add_argument("--output", type=Path, help="write the table here (atomically) as well as print it")
    args = parser.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    tables = []
    try:
        for item in [r for r in args.rows.split(",") if r]:
            row, _, baseline = item.partition(":")
            baseline = baseline or args.baseline
            margins = {d: dataset_margins(d, args.results, row, baseline) for d in datasets}
            tables.append(render(margins, row, baseline, args.results))
    except DynatssError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = "\n".join(tables)
    print(text, end="")
    if args.output is not None:
        command = shlex.join(["python", "experiments/margin_by_class.py", *(argv if argv is not None else sys.argv[1:])])
        atomic_write_text(args.output, f"# AP by class, paired by seed\n\nBuilt from the committed runs (nothing "
                                       f"trained) by\n\n    {command}\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
