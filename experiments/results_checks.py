"""The issue's bars for one dataset, computed from the finished runs rather than written by hand.

Convergence (each of our variants): the sample std of AP over seeds is at most 2 AP and no seed falls
more than 3 AP below the variant's mean. Method: the full Dynamic ATSS recipe's mean AP (uniform box
weights, the recipe's loss) is at least ATSS's, the official one and the one with the recipe's box
loss, and at least 3 AP above torchvision FCOS's, and no class's mean AP is more than 2 AP below the
same class under either ATSS. Table V pairs: each head with combined IoUs at least matches itself
without, under the official box weights, under uniform ones, and under uniform ones with the recipe's
cap on positives from half way; and VFNet is within 3 AP of ATSS. A check whose rows are missing is
left out.

The bars compare means, as the issue asks. Each comparison also says how its paired difference by
seed (experiments.paired) stands to the bar: above or below it beyond the seed noise (the 95 %
interval excludes the bar) or within the noise, so that a "no" by 0.1 AP reads as what it is.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Protocol

from experiments.paired import paired_difference

MAX_STD = 2.0  # AP points
MAX_DROP = 3.0  # AP points below the variant's mean, for any seed
FCOS_MARGIN = 3.0  # AP points the full method must clear torchvision FCOS by
CLASS_MARGIN = 2.0  # AP points a class of the full method may trail the same class under ATSS by
VFNET_MARGIN = 3.0  # AP points VFNet may trail ATSS by
TOLERANCE = 1e-6  # AP points: a bar met exactly is met, whatever the float rounding of fraction x 100
FULL = "ciou_qfl_iou_uniform_cap50"  # the recipe's Dynamic ATSS (the cap on positives from half way)
ATSS_ROWS = ("atss", "atss_uniform")  # official ATSS, and ATSS with the recipe's box loss
CONVERGENCE_VARIANTS = (*ATSS_ROWS, "ciou_qfl_iou", "ciou_qfl_iou_uniform", FULL, "tv_fcos", "gflv2", "gflv2_ciou", "vfnet", "vfnet_ciou")


class _Row(Protocol):
    """What a check needs of a results row (experiments.results_doc.Row)."""

    @property
    def variant(self): ...

    @property
    def metrics(self) -> dict[int, dict[str, float]]: ...

    @property
    def per_class(self) -> dict[int, dict[str, float]]: ...


@dataclass(frozen=True)
class Check:
    """One bar: what it asks, what was measured, and whether the measurement meets it."""

    bar: str
    measured: str
    met: bool
    paired: str = ""  # the paired difference by seed against the bar; empty without one


def seed_aps(row: _Row) -> list[float]:
    """AP in percent of every finished seed, in seed order."""
    return [100 * row.metrics[seed]["AP"] for seed in sorted(row.metrics)]


def convergence(row: _Row) -> Check | None:
    """std over seeds <= MAX_STD and no seed more than MAX_DROP below the mean; None below 2 seeds."""
    aps = seed_aps(row)
    if len(aps) < 2:
        return None
    mean, std = statistics.fmean(aps), statistics.stdev(aps)
    drop = mean - min(aps)
    return Check(
        f"{row.variant.label} converges (std <= {MAX_STD:g}, no seed > {MAX_DROP:g} below the mean)",
        f"std {std:.1f}, worst seed {drop:.1f} below the mean {mean:.1f} ({len(aps)} seeds)",
        std <= MAX_STD + TOLERANCE and drop <= MAX_DROP + TOLERANCE,
    )


def at_least(rows: dict[str, _Row], better: str, worse: str, margin: float = 0.0) -> Check | None:
    """mean AP of ``better`` >= mean AP of ``worse`` + margin (minus margin when negative)."""
    if better not in rows or worse not in rows or not rows[better].metrics or not rows[worse].metrics:
        return None
    mean_better = statistics.fmean(seed_aps(rows[better]))
    mean_worse = statistics.fmean(seed_aps(rows[worse]))
    bar = f"{rows[better].variant.label} >= {rows[worse].variant.label}"
    if margin > 0:
        bar += f" + {margin:g}"
    elif margin < 0:
        bar += f" - {-margin:g}"
    seeds_better, seeds_worse = len(rows[better].metrics), len(rows[worse].metrics)
    # Means over different seed counts are named so (the paired column uses the shared seeds only).
    counts = ("", "") if seeds_better == seeds_worse else (f" ({seeds_better} seeds)", f" ({seeds_worse} seeds)")
    return Check(bar, f"{mean_better:.1f}{counts[0]} vs {mean_worse:.1f}{counts[1]} ({mean_better - mean_worse:+.1f})",
                 mean_better + TOLERANCE >= mean_worse + margin, paired_reading(rows[better], rows[worse], margin))


def paired_reading(row: _Row, baseline: _Row, margin: float) -> str:
    """The AP difference paired by seed, its 95 % interval, and where the bar ``margin`` lies in it;
    empty below 2 shared seeds."""
    paired = paired_difference(row, baseline, "AP")
    if paired is None:
        return ""
    mean, half_width, count, _ = paired
    if mean - half_width > margin:
        verdict = "above the bar beyond the noise"
    elif mean + half_width < margin:
        verdict = "below the bar beyond the noise"
    else:
        verdict = "within the noise of the bar"
    return f"{mean:+.1f} ({mean - half_width:+.1f}, {mean + half_width:+.1f}), {count} seeds: {verdict}"


def class_means(row: _Row) -> dict[str, float]:
    """Mean AP in percent of each class over the seeds that logged it (COCO's -1 left out)."""
    values: dict[str, list[float]] = {}
    for per_class in row.per_class.values():
        for name, ap in per_class.items():
            if isinstance(ap, float) and ap >= 0:
                values.setdefault(name, []).append(100 * ap)
    return {name: statistics.fmean(aps) for name, aps in values.items()}


def no_class_behind(rows: dict[str, _Row], row: str, baseline: str, margin: float) -> Check | None:
    """Every class's mean AP under ``row`` >= the same class's under ``baseline`` - margin; None
    without per-class results for two or more classes."""
    if row not in rows or baseline not in rows:
        return None
    mine, theirs = class_means(rows[row]), class_means(rows[baseline])
    shared = [name for name in theirs if name in mine]
    if len(shared) < 2:
        return None
    worst = min(shared, key=lambda name: mine[name] - theirs[name])
    gap = mine[worst] - theirs[worst]
    return Check(f"no class of {rows[row].variant.label} more than {margin:g} below {rows[baseline].variant.label}",
                 f"worst class {worst}: {mine[worst]:.1f} vs {theirs[worst]:.1f} ({gap:+.1f})",
                 gap + TOLERANCE >= -margin)


def dataset_checks(rows: list[_Row]) -> list[Check]:
    """Every bar whose rows were run on this dataset, in the issue's order."""
    by_name = {row.variant.name: row for row in rows}
    checks = [convergence(by_name[name]) for name in CONVERGENCE_VARIANTS if name in by_name]
    checks += [
        *(at_least(by_name, FULL, atss) for atss in ATSS_ROWS),
        *(no_class_behind(by_name, FULL, atss, CLASS_MARGIN) for atss in ATSS_ROWS),
        at_least(by_name, FULL, "tv_fcos", FCOS_MARGIN),
        at_least(by_name, "gflv2_ciou", "gflv2"),
        at_least(by_name, "vfnet_ciou", "vfnet"),
        at_least(by_name, "gflv2_ciou_uniform", "gflv2_uniform"),
        at_least(by_name, "vfnet_ciou_uniform", "vfnet_uniform"),
        at_least(by_name, "gflv2_ciou_uniform_cap50", "gflv2_uniform"),
        at_least(by_name, "vfnet_ciou_uniform_cap50", "vfnet_uniform"),
        at_least(by_name, "gflv2_ciou_uniform_cap50_lvl", "gflv2_uniform"),
        at_least(by_name, "vfnet_ciou_uniform_cap50_lvl", "vfnet_uniform"),
        at_least(by_name, "vfnet", "atss", -VFNET_MARGIN),
    ]
    return [check for check in checks if check is not None]


def render_checks(checks: list[Check]) -> str:
    """Markdown table of the bars; empty when no bar applies."""
    if not checks:
        return ""
    lines = ["| bar | measured (AP, percent) | met | paired by seed (95 % interval) |", "|---|---|---|---|"]
    lines += [f"| {c.bar} | {c.measured} | {'yes' if c.met else '**no**'} | {c.paired or '-'} |" for c in checks]
    return "\n".join(lines) + "\n"
