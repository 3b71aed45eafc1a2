"""Do two training runs have the same loss curve? Largest difference per logged loss, iteration by iteration.

A speed change must not change what is computed. Train the same config for a few iterations with
the code before and after the change, logging every iteration, then compare:

    R="configs/recipes/small_data_cpu.yaml data.root=../shared/data/bccd data.max_size=427"
    cd <reference checkout> && PYTHONPATH=. python -m dynatss train $R solver.max_iter=20 \
        train.eval_period=0 train.log_period=1 train.output_dir=/tmp/speed_before
    cd <changed checkout> && PYTHONPATH=. python -m dynatss train $R ... train.output_dir=/tmp/speed_after
    PYTHONPATH=. python benchmarks/compare_losses.py /tmp/speed_before /tmp/speed_after

Prints a table (key, difference at the first iteration, largest absolute and relative difference
over all, at which iteration) and exits 1 when the iterations differ or a relative difference
exceeds its tolerance: every key within ``--first-rtol`` at the first logged iteration (same
weights, same batch: only float rounding may differ), and the total loss within ``--rtol`` after
it (single terms and positive counts wander more: one positive more or less moves a normaliser).
Rounding differences grow as SGD goes on: the same code with 2 threads instead of 1 moved the loss
by up to 1.9e-3 (relative) within 20 iterations of the BCCD config (docs/benchmarks.md), hence
the looser ``--rtol``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_KEYS = ("loss", "loss_cls", "loss_box", "loss_quality", "num_pos", "mean_piou")


def train_lines(run_dir: Path) -> dict[int, dict]:
    """{iteration: train line} of ``run_dir/metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {line["iter"]: line for line in lines if line.get("type") == "train"}


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def differences(before: dict[int, dict], after: dict[int, dict], key: str) -> tuple[float, float, int]:
    """Largest |a - b| and |a - b| / max(|a|, |b|) over the common iterations, and where the latter is."""
    worst_abs, worst_rel, where = 0.0, 0.0, 0
    for iteration in sorted(before.keys() & after.keys()):
        a, b = before[iteration].get(key), after[iteration].get(key)
        if a is None or b is None:
            continue
        worst_abs = max(worst_abs, abs(a - b))
        if relative(a, b) > worst_rel:
            worst_rel, where = relative(a, b), iteration
    return worst_abs, worst_rel, where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="run directory (metrics.jsonl) of the reference code")
    parser.add_argument("after", type=Path, help="run directory of the changed code")
    parser.add_argument("--keys", default=",".join(DEFAULT_KEYS))
    parser.add_argument("--first-rtol", type=float, default=1e-5, help="at the first logged iteration")
    parser.add_argument("--rtol", type=float, default=5e-3, help="at any later iteration")
    args = parser.parse_args(argv)
    before, after = train_lines(args.before), train_lines(args.after)
    print(f"iterations: {len(before)} before, {len(after)} after, {len(before.keys() & after.keys())} in common\n")
    print("| key | rel. difference at the first iteration | largest abs. difference | largest rel. difference "
          "| at iteration |\n|---|---|---|---|---|")
    failed = sorted(before) != sorted(after) or not before
    first = min(before, default=0)
    for key in args.keys.split(","):
        worst_abs, worst_rel, where = differences(before, after, key)
        at_first = relative(before[first][key], after[first][key]) if first in after else float("inf")
        print(f"| {key} | {at_first:.3g} | {worst_abs:.3g} | {worst_rel:.3g} | {where} |")
        failed |= at_first > args.first_rtol or (key == "loss" and worst_rel > args.rtol)
    print(f"\n{'DIFFERENT' if failed else 'same'} (first iteration within rtol {args.first_rtol:g}, "
          f"total loss later within {args.rtol:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
