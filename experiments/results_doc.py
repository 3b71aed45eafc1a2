"""docs/results.md from the committed runs: per dataset, a table of mean ± std over seeds, every seed,
the assignment statistics, the paper's Fig. 2 on that data, then the commands, machine and wall times.

It reads only docs/results/runs/<dataset>/<variant>/seed<k>/{metrics.jsonl, run.json} and each
dataset's grid.json (written by experiments/ablation.py), so the document can be rebuilt anywhere.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from dynatss.atomic import atomic_write_text
from dynatss.draw.curves import ASSIGN_PANELS, LOSS_BOX
from dynatss.reports.compare import group_runs, plot_groups
from dynatss.reports.runs import COCO_COLUMNS, RunLog, read_run
from experiments.paired import paired_difference
from experiments.results_checks import dataset_checks, render_checks
from experiments.variants import VARIANTS, Variant

RUN_FILE = "run.json"
GRID_FILE = "grid.json"
# Datasets in the order the document shows them; others follow alphabetically.
DATASET_ORDER = ("bccd", "aquarium", "aerial_cars")
FIG2_VARIANTS = ("atss", "atss_ciou", "ciou_qfl_iou")  # the paper's Fig. 2: ATSS vs + combined IoUs
MEAN_PIOU = next(panel for panel in ASSIGN_PANELS if panel.key == "mean_piou")
# Training-log keys summarised per variant: what the assignment did, and the regression loss.
ASSIGNMENT_KEYS = ("pos_per_gt", "mean_aiou", "mean_piou", "loss_box")
LAST_ITERATIONS = 50
# The paired comparison, seed by seed: every variant of ours against ATSS, except the Table V rows,
# compared with their own head: with combined IoUs against ATSS assignment under the same box
# weights, with uniform box weights and ATSS assignment against the official weights.
PAIRED_BASELINE = "atss"
TABLE_V_BASELINES = {"gflv2_ciou": "gflv2", "gflv2_ciou_lvl": "gflv2", "vfnet_ciou": "vfnet",
                     "vfnet_ciou_lvl": "vfnet", "gflv2_uniform": "gflv2", "gflv2_ciou_uniform": "gflv2_uniform",
                     "vfnet_uniform": "vfnet", "vfnet_ciou_uniform": "vfnet_uniform",
                     "gflv2_ciou_uniform_cap50": "gflv2_uniform", "vfnet_ciou_uniform_cap50": "vfnet_uniform",
                     "gflv2_ciou_uniform_cap50_lvl": "gflv2_uniform", "vfnet_ciou_uniform_cap50_lvl": "vfnet_uniform"}
# One-change variants, also compared with the row they change: the paper's full method, ATSS under
# the same box weights, a Table V head with combined IoUs under the official weights or without the
# recipe's cap or level gate.
EXTRA_BASELINES = {"ciou_qfl_iou_lvl": ("ciou_qfl_iou",), "ciou_qfl_iou_cap": ("ciou_qfl_iou",),
                   "ciou_qfl_iou_uniform": ("ciou_qfl_iou", "atss_uniform"),
                   "ciou_qfl_iou_uniform_cap": ("ciou_qfl_iou_uniform",),
                   "ciou_qfl_iou_uniform_cap50": ("ciou_qfl_iou_uniform", "ciou_qfl_iou_uniform_cap"),
                   "ciou_qfl_iou_uniform_cap76": ("ciou_qfl_iou_uniform", "ciou_qfl_iou_uniform_cap"),
                   "ciou_qfl_iou_uniform_ema": ("ciou_qfl_iou_uniform", "atss_ema"),
                   "ciou_qfl_iou_uniform_cap50_ema": ("ciou_qfl_iou_uniform_cap50",),
                   "gflv2_ciou_uniform": ("gflv2_ciou",), "vfnet_ciou_uniform": ("vfnet_ciou",),
                   "gflv2_ciou_uniform_cap50": ("gflv2_ciou_uniform",),
                   "vfnet_ciou_uniform_cap50": ("vfnet_ciou_uniform",),
                   "gflv2_ciou_uniform_cap50_lvl": ("gflv2_ciou_uniform_cap50",),
                   "vfnet_ciou_uniform_cap50_lvl": ("vfnet_ciou_uniform_cap50",)}
PAIRED_COLUMNS = ("AP", "AP50", "AP75")


def final_eval(run_dir: Path, max_iter: int) -> dict | None:
    """The run's evaluation line at ``max_iter`` (metrics, per_class), or None when it is not finished."""
    if not (run_dir / "metrics.jsonl").is_file():
        return None
    evals = [line for line in read_run(run_dir).evals if int(line["iter"]) == max_iter]
    return evals[-1] if evals else None


def final_metrics(run_dir: Path, max_iter: int) -> dict[str, float] | None:
    """The COCO metrics of the run's evaluation at ``max_iter``, or None when the run is not finished."""
    line = final_eval(run_dir, max_iter)
    return line["metrics"] if line else None


@dataclass
class Row:
    """One variant: per-seed metrics of finished runs (COCO fractions), wall times, failures."""

    variant: Variant
    seeds: list[int]
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)
    wall_s: dict[int, float] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)

    def summary(self, column: str) -> tuple[float, float] | None:
        """(mean, sample std) over seeds in percent; std 0 for one seed; None if nothing (or COCO's -1)."""
        values = [100 * m[column] for m in self.metrics.values() if m.get(column, -1) >= 0]
        if not values:
            return None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_cell(summary: tuple[float, float] | None, count: int) -> str:
    if summary is None:
        return "-"
    return f"{summary[0]:.1f}" if count < 2 else f"{summary[0]:.1f} ± {summary[1]:.1f}"


def render_table(rows: list[Row]) -> str:
    """Markdown table: mean ± std over seeds (percent, as the paper's tables) per variant."""
    lines = ["| Model | seeds | " + " | ".join(COCO_COLUMNS) + " | min/run |",
             "|---|---:|" + "---:|" * (len(COCO_COLUMNS) + 1)]
    for row in rows:
        done = len(row.metrics)
        cells = [format_cell(row.summary(column), done) for column in COCO_COLUMNS]
        minutes = [row.wall_s[s] / 60 for s in row.metrics if s in row.wall_s]
        wall = f"{statistics.fmean(minutes):.1f}" if minutes else "-"
        status = f"{done}/{len(row.seeds)}"
        missing = [s for s in row.seeds if s not in row.metrics]
        if missing:
            status += " (missing seed " + ", ".join(map(str, missing)) + ")"
        lines.append(f"| {row.variant.label} | {status} | " + " | ".join(cells) + f" | {wall} |")
    return "\n".join(lines) + "\n"


def render_per_seed(rows: list[Row]) -> str:
    """Markdown table: AP / AP50 of every seed, so that "at every seed" claims can be checked."""
    seeds = sorted({seed for row in rows for seed in row.seeds})
    lines = ["| Model | " + " | ".join(f"seed {seed} AP / AP50" for seed in seeds) + " |",
             "|---|" + "---:|" * len(seeds)]
    for row in rows:
        cells = [f"{100 * row.metrics[s]['AP']:.1f} / {100 * row.metrics[s]['AP50']:.1f}" if s in row.metrics else "-"
                 for s in seeds]
        lines.append(f"| {row.variant.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_paired(rows: list[Row]) -> str:
    """Markdown table: each of our variants minus its baseline (ATSS, or the same Table V head under
    ATSS assignment) and its EXTRA_BASELINES, paired by seed: mean and 95 % interval."""
    by_name = {row.variant.name: row for row in rows}
    lines = ["| Model | against | seeds | " + " | ".join(f"{c} difference" for c in PAIRED_COLUMNS) + " | ahead at |",
             "|---|---|---:|" + "---:|" * (len(PAIRED_COLUMNS) + 1)]
    for row in rows:
        if row.variant.peer is not None:
            continue
        names = (TABLE_V_BASELINES.get(row.variant.name, PAIRED_BASELINE), *EXTRA_BASELINES.get(row.variant.name, ()))
        for baseline in (by_name[name] for name in names if name in by_name):
            if row is baseline:
                continue
            differences = [paired_difference(row, baseline, column) for column in PAIRED_COLUMNS]
            if differences[0] is None:
                continue
            cells = [f"{d[0]:+.1f} ({d[0] - d[1]:+.1f}, {d[0] + d[1]:+.1f})" for d in differences]
            count, ahead = differences[0][2], differences[0][3]
            lines.append(f"| {row.variant.label} | `{baseline.variant.name}` | {count} | " + " | ".join(cells)
                         + f" | {ahead}/{count} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def render_per_class(rows: list[Row]) -> str:
    """Markdown table: AP (percent) of each class, mean ± std over seeds; empty for one class or none logged."""
    classes = list(dict.fromkeys(name for row in rows for seed in row.per_class for name in row.per_class[seed]))
    if len(classes) < 2:
        return ""
    lines = ["| Model | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for row in rows:
        cells = []
        for name in classes:
            values = [100 * pc[name] for pc in row.per_class.values() if isinstance(pc.get(name), float) and pc[name] >= 0]
            summary = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else None
            cells.append(format_cell(summary, len(values)))
        lines.append(f"| {row.variant.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def assignment_statistics(run_dir: Path, last: int = LAST_ITERATIONS) -> dict[str, float] | None:
    """Means over the last ``last`` logged iterations of metrics.jsonl (our detectors only)."""
    try:
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    train = [line for line in lines if line.get("type") == "train"]
    if not train or any(key not in train[-1] for key in ASSIGNMENT_KEYS):
        return None
    tail = [line for line in train if line["iter"] > train[-1]["iter"] - last]
    return {key: statistics.fmean(line[key] for line in tail) for key in ASSIGNMENT_KEYS}


def render_assignment(rows: list[Row], root: Path) -> str:
    """Markdown table: positives per GT, mean AIoU / PIoU of positives and box loss, mean over seeds."""
    lines = [f"| Model | {' | '.join(ASSIGNMENT_KEYS)} |", "|---|" + "---:|" * len(ASSIGNMENT_KEYS)]
    for row in rows:
        stats = [assignment_statistics(root / row.variant.name / f"seed{seed}") for seed in row.metrics]
        stats = [s for s in stats if s]
        if not stats:
            continue
        cells = [f"{statistics.fmean(s[key] for s in stats):.3f}" for key in ASSIGNMENT_KEYS]
        lines.append(f"| {row.variant.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def collect(variants: list[Variant], seeds: list[int], root: Path, max_iter: int) -> tuple[list[Row], list[dict]]:
    """Rows of finished runs under ``root`` (one dataset) and the run.json of every run found."""
    rows, infos = [], []
    for variant in variants:
        row = Row(variant, list(seeds))
        for seed in seeds:
            run_dir = root / variant.name / f"seed{seed}"
            info = read_json(run_dir / RUN_FILE)
            line = final_eval(run_dir, max_iter)
            metrics = line["metrics"] if line else None
            if info is not None:
                infos.append({**info, "run_dir": str(run_dir)})
                row.wall_s[seed] = float(info["wall_s"])
                if info.get("returncode") and metrics is None:
                    row.failed.append(seed)
            if metrics is not None:
                row.metrics[seed] = metrics
                row.per_class[seed] = line.get("per_class") or {}
        rows.append(row)
    return rows, infos


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_figures(rows: list[Row], root: Path, figure_dir: Path, max_iter: int) -> list[Path]:
    """Fig. 2 (regression loss) and the mean PIoU of positives, ATSS vs Dynamic ATSS, seeds averaged;
    none with fewer than two of its rows (one detector's curve is not the paper's comparison)."""
    runs: list[RunLog] = []
    labels: list[str] = []
    for row in rows:
        if row.variant.name in FIG2_VARIANTS:
            for seed in row.metrics:
                runs.append(read_run(root / row.variant.name / f"seed{seed}"))
                labels.append(row.variant.label)
    if len(set(labels)) < 2:
        return []
    groups = group_runs(runs, labels=labels)
    return [
        plot_groups(groups, (LOSS_BOX,), figure_dir / "loss_box.png", title="Fig. 2", smooth=None),
        plot_groups(groups, (MEAN_PIOU,), figure_dir / "mean_piou.png", title="PIoU", smooth=None),
    ]


@dataclass
class DatasetResults:
    """What the document shows of one dataset."""

    name: str
    grid: dict
    rows: list[Row]
    infos: list[dict]
    figures: list[Path]
    root: Path


def committed_seeds(root: Path, variants: list[Variant], grid: dict) -> list[int]:
    """Every seed with a directory under one of ``variants`` in ``root``, and those grid.json names."""
    found = {int(p.name[4:]) for v in variants for p in (root / v.name).glob("seed*") if p.name[4:].isdigit()}
    return sorted(found | set(grid.get("seeds", [])))


def dataset_results(root: Path, figure_dir: Path) -> DatasetResults:
    """The rows of every variant and seed committed under ``root`` = docs/results/runs/<dataset>."""
    grid = read_json(root / GRID_FILE) or {}
    present = {p.name for p in root.iterdir() if p.is_dir()}
    variants = [v for v in VARIANTS if v.name in present]
    seeds = committed_seeds(root, variants, grid)
    max_iter = int(grid.get("max_iter", 0))
    rows, infos = collect(variants, seeds, root, max_iter)
    rows = [row for row in rows if row.metrics or row.failed or any(s in row.wall_s for s in row.seeds)]
    figures = write_figures(rows, root, figure_dir, max_iter)
    return DatasetResults(root.name, grid, rows, infos, figures, root)


def render_dataset(result: DatasetResults, doc: Path) -> list[str]:
    setup = result.grid.get("setup", {})
    lines = [
        f"## {result.name}", "",
        f"Data: {setup.get('data', '?')}; {setup.get('model', '')}; {setup.get('solver', '')}. "
        f"Settings: `{result.grid.get('base_config', '?')}` + `{result.grid.get('dataset_config', '?')}` + "
        "each variant's `configs/ablations/<variant>.yaml`.", "",
        "COCO box AP (percent) on the evaluation split after the last iteration: mean ± sample std over "
        "seeds; `-` where COCO has no ground truth of that size or no run finished; min/run is the mean "
        "wall time of a run.", "",
        render_table(result.rows),
        "Per seed:", "",
        render_per_seed(result.rows),
    ]
    paired = render_paired(result.rows)
    if paired:
        lines += ["Each row against ATSS (a Table V row: against its own head with one change less), seed by "
                  "seed (percent; the same seed gives the same head initialisation and data order): mean "
                  "difference and its 95 % t interval in brackets; an interval that contains 0 is inside "
                  "the seed noise. `ahead at`: seeds where the row's AP is higher.", "",
                  paired]
    per_class = render_per_class(result.rows)
    if per_class:
        lines += ["AP per class (percent, mean ± std over seeds):", "", per_class]
    checks = render_checks(dataset_checks(result.rows))
    if checks:
        lines += ["The issue's bars on this dataset (computed from the runs above by "
                  "`experiments/results_checks.py`). The bars compare means; the last column places the "
                  "bar in the paired difference's 95 % interval, so that a miss inside the seed noise "
                  "reads as one:", "", checks]
    lines += [
        f"What the assignment did (training log, mean of the last {LAST_ITERATIONS} iterations, mean over "
        "seeds; the box loss is GIoU weighted by the quality target, or by 1 with uniform box weights, so "
        "it compares runs with the same quality branch and weights):", "",
        render_assignment(result.rows, result.root),
    ]
    failed = [f"{row.variant.name} seed {seed}" for row in result.rows for seed in row.failed]
    if failed:
        lines += [f"Failed runs: {', '.join(failed)}.", ""]
    if result.figures:
        lines += ["Training curves, seeds averaged (band: ± 1 std over seeds):", ""]
        lines += [f"![{result.name} {path.stem}]({os.path.relpath(path, doc.parent)})" for path in result.figures]
        lines.append("")
    return lines


def render_document(results: list[DatasetResults], doc: Path) -> str:
    """The whole document: a section per dataset, the hand-written analysis, commands, machine, time."""
    names = ", ".join(result.name for result in results)
    lines = [f"# Results: Dynamic ATSS, ATSS and torchvision FCOS on small real datasets ({names})", ""]
    intro = doc.with_name(f"{doc.stem}_recipe.md")
    if intro.exists():
        lines += [intro.read_text().rstrip(), ""]
    for result in results:
        lines += render_dataset(result, doc)
    analysis = doc.with_name(f"{doc.stem}_analysis.md")
    if analysis.exists():
        lines += [analysis.read_text().rstrip(), ""]
    infos = [info for result in results for info in result.infos]
    lines += ["## Commands", "", "The grid, per dataset (each invocation; runs already committed are skipped):", ""]
    for result in results:
        lines += [f"- {result.name}:", "", "```", *result.grid.get("invocations", []), "```", ""]
    lines += ["Each run (threads = OMP_NUM_THREADS; the scratch run directory is not kept):", "", "```"]
    lines += [f"# {info['wall_s'] / 60:.1f} min, {info['threads']} thread(s), exit {info['returncode']}\n"
              f"{info['command']}" for info in infos]
    machines = {json.dumps(info["machine"], sort_keys=True) for info in infos if "machine" in info}
    total_s = sum(float(info["wall_s"]) for info in infos)
    lines += ["```", "", "## Machine and wall time", ""]
    lines += [f"- {', '.join(f'{k}: {v}' for k, v in json.loads(m).items())}" for m in sorted(machines)]
    lines += [f"- {len(infos)} runs, {total_s / 3600:.1f} h of run wall time in all, two or three runs at a time "
              "(one thread each) beside other work on the 2 cores, so the wall times are upper bounds.", ""]
    return "\n".join(lines)


def ordered_datasets(results_dir: Path) -> list[Path]:
    names = [p.name for p in results_dir.iterdir() if p.is_dir()] if results_dir.is_dir() else []
    order = [n for n in DATASET_ORDER if n in names] + sorted(n for n in names if n not in DATASET_ORDER)
    return [results_dir / name for name in order]


def write_results(results_dir: Path, doc: Path) -> Path:
    """Rebuild ``doc`` (and its figures in docs/results/<dataset>/) from the runs under ``results_dir``."""
    results = [dataset_results(root, doc.parent / doc.stem / root.name) for root in ordered_datasets(results_dir)]
    return atomic_write_text(doc, render_document(results, doc))
