"""Paired differences by seed: one row's metric minus another's over the seeds both finished.

The same seed gives both rows the same head initialisation and data order, so the per-seed
differences vary less than either row's metric, and a difference whose 95 % t interval excludes 0
is more than seed noise.
"""

from __future__ import annotations

import statistics
from typing import Protocol

# Two-sided 95 % quantiles of Student's t by degrees of freedom (any statistics table; no scipy here).
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


class SeededRow(Protocol):
    """A results row: the final metrics (fractions) of every finished seed."""

    @property
    def metrics(self) -> dict[int, dict[str, float]]: ...


def paired_difference(row: SeededRow, baseline: SeededRow, column: str) -> tuple[float, float, int, int] | None:
    """``row`` minus ``baseline`` seed by seed, in percent: (mean, half-width of the 95 % t interval,
    shared seeds, seeds where ``row`` is ahead); None below 2 shared seeds."""
    seeds = sorted(set(row.metrics) & set(baseline.metrics))
    if len(seeds) < 2:
        return None
    differences = [100 * (row.metrics[s][column] - baseline.metrics[s][column]) for s in seeds]
    quantile = T_95[min(len(seeds) - 1, max(T_95))]  # beyond the table: its last value, a little wide
    half_width = quantile * statistics.stdev(differences) / len(seeds) ** 0.5
    return statistics.fmean(differences), half_width, len(seeds), sum(d > 0 for d in differences)
