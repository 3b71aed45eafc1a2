"""Compare training runs: loss and assignment-statistic curves, and a table of final COCO metrics.

Figure ``loss_box.png`` is the paper's Figs. 2-4 (regression loss of ATSS vs ATSS + combined IoUs);
``losses.png`` shows the classification and quality losses, ``assignment.png`` the label-assignment
statistics (positives per GT, mean PIoU and AIoU of the positives). Runs of one variant trained
with different seeds can be averaged (mean, with a +-1 std band and "mean +- std" in the table).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynatss.atomic import atomic_write_bytes, atomic_write_text
from dynatss.draw.curves import ASSIGN_PANELS, LOSS_BOX, LOSS_PANELS, Curve, Panel, panels_png
from dynatss.errors import DynatssError
from dynatss.reports.runs import COCO_COLUMNS, RunLog, flatten, read_run

# Config keys that do not define a variant: runs differing only in these are repeats.
NON_VARIANT_KEYS = ("train.seed", "train.output_dir", "train.device", "data.num_workers", "train.log_period")
MAX_LABEL_KEYS = 3
TABLE_FILE = "compare.md"


@dataclass(frozen=True)
class RunGroup:
    """Runs shown as one curve / one table row (a single run, or repeats with different seeds)."""

    label: str
    runs: tuple[RunLog, ...]


def group_runs(runs: list[RunLog], *, labels: list[str] | None = None, by_config: bool = False) -> list[RunGroup]:
    """One group per run; runs with the same label, or (``by_config``) the same variant, together."""
    if labels is not None and len(labels) != len(runs):
        raise DynatssError(f"--labels: got {len(labels)} labels for {len(runs)} runs")
    if by_config:
        keys = [_variant_key(run) for run in runs]
    else:
        keys = list(labels) if labels is not None else [str(run.run_dir.resolve()) for run in runs]
    members: dict[object, list[RunLog]] = {}
    for key, run in zip(keys, runs):
        members.setdefault(key, []).append(run)
    groups = list(members.values())
    if labels is not None:
        names = [labels[runs.index(group[0])] for group in groups]
    elif by_config and len(groups) > 1:
        names = _difference_labels(groups)
    else:
        names = [_unique_name(group[0], runs) for group in groups]
    return [RunGroup(name, tuple(group)) for name, group in zip(names, groups)]


def _variant_key(run: RunLog) -> tuple:
    flat = flatten(run.config)
    return tuple(sorted((k, repr(v)) for k, v in flat.items() if k not in NON_VARIANT_KEYS))


def _difference_labels(groups: list[list[RunLog]]) -> list[str]:
    """Name each group by the config values that tell it apart, e.g. ``assign.mode=dynamic``."""
    flats = [{k: v for k, v in flatten(g[0].config).items() if k not in NON_VARIANT_KEYS} for g in groups]
    keys = sorted({k for flat in flats for k in flat})
    differing = [k for k in keys if len({repr(flat.get(k)) for flat in flats}) > 1]
    names = []
    for flat, group in zip(flats, groups):
        parts = [f"{k}={flat.get(k)}" for k in differing[:MAX_LABEL_KEYS]]
        name = ", ".join(parts) + (", ..." if len(differing) > MAX_LABEL_KEYS else "")
        count = f" (n={len(group)})" if len(group) > 1 else ""
        names.append(f"{name or group[0].name}{count}")
    return names


def _unique_name(run: RunLog, runs: list[RunLog]) -> str:
    """The run folder's name, or parent/name when two runs share a folder name."""
    if sum(other.name == run.name for other in runs) > 1:
        return f"{run.run_dir.resolve().parent.name}/{run.name}"
    return run.name


def group_curve(group: RunGroup, key: str) -> Curve:
    """The group's values of ``key``: one run as logged; several averaged over their common iterations."""
    series = [run.series(key) for run in group.runs]
    if len(series) == 1:
        return Curve(group.label, *series[0])
    common = series[0][0]
    for iters, _ in series[1:]:
        common = np.intersect1d(common, iters)
    stacked = np.stack([values[np.isin(iters, common)] for iters, values in series])  # [R, N]
    return Curve(group.label, common, stacked.mean(axis=0), stacked.std(axis=0))


def plot_groups(groups: list[RunGroup], panels: tuple[Panel, ...], path: Path, *, title: str,
                smooth: int | None) -> Path:
    curves = {panel.key: [group_curve(group, panel.key) for group in groups] for panel in panels}
    return atomic_write_bytes(path, panels_png(curves, panels, title=title, smooth=smooth))


def format_value(values: list[float], decimals: int) -> str:
    """One number, or "mean ± std" over repeats; "-" when nothing was logged or COCO gave -1
    (no ground truth of that size)."""
    values = [v for v in values if v >= 0]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{decimals}f}"
    return f"{statistics.fmean(values):.{decimals}f} ± {statistics.stdev(values):.{decimals}f}"


def table_decimals(groups: list[RunGroup]) -> int:
    """3 decimals for COCO fractions (0..1), 1 for percentages (the paper's tables)."""
    values = [
        run.final_eval["metrics"].get(column)
        for group in groups for run in group.runs if run.final_eval
        for column in COCO_COLUMNS
    ]
    return 3 if all(v is None or abs(v) <= 1.0 for v in values) else 1


def metrics_table(groups: list[RunGroup]) -> str:
    """Markdown table of each group's final evaluation (last eval line of metrics.jsonl)."""
    decimals = table_decimals(groups)
    rows = ["| Run | runs | iter | " + " | ".join(COCO_COLUMNS) + " |",
            "|---|---:|---:|" + "---:|" * len(COCO_COLUMNS)]
    for group in groups:
        finals = [run.final_eval for run in group.runs if run.final_eval is not None]
        iters = sorted({int(line["iter"]) for line in finals})
        cells = [format_value([line["metrics"][c] for line in finals if c in line["metrics"]], decimals)
                 for c in COCO_COLUMNS]
        iter_text = "/".join(map(str, iters)) if iters else "no eval"
        rows.append(f"| {group.label} | {len(group.runs)} | {iter_text} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def compare_runs(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    *,
    labels: list[str] | None = None,
    group_by_config: bool = False,
    smooth: int | None = None,
) -> list[Path]:
    """Write loss_box.png, losses.png, assignment.png and compare.md to ``out_dir``; return their paths."""
    if not run_dirs:
        raise DynatssError("compare: give at least one run directory")
    runs = [read_run(path) for path in run_dirs]
    groups = group_runs(runs, labels=labels, by_config=group_by_config)
    out_dir = Path(out_dir)
    written = [
        plot_groups(groups, (LOSS_BOX,), out_dir / "loss_box.png", title="Regression loss", smooth=smooth),
        plot_groups(groups, LOSS_PANELS, out_dir / "losses.png", title="Classification and quality losses",
                    smooth=smooth),
        plot_groups(groups, ASSIGN_PANELS, out_dir / "assignment.png", title="Label-assignment statistics",
                    smooth=smooth),
    ]
    written.append(atomic_write_text(out_dir / TABLE_FILE, _markdown(groups, written)))
    return written


def _markdown(groups: list[RunGroup], figures: list[Path]) -> str:
    lines = ["# Run comparison", "", "Final evaluation (the last `eval` line of each run's metrics.jsonl):", "",
             metrics_table(groups), "Runs:", ""]
    for group in groups:
        for run in group.runs:
            note = f" ({run.skipped_lines} unreadable lines skipped)" if run.skipped_lines else ""
            lines.append(f"- {group.label}: `{run.run_dir}`{note}")
    lines += ["", "## Curves", ""]
    lines += [f"![{figure.stem}]({figure.name})" for figure in figures]
    return "\n".join(lines) + "\n"
