"""Do two training runs have the same loss curve? Largest difference per logged loss, iteration by iteration.

A speed change must not change what is computed. Train the same config for a few iterations with
the code before and after the change, logging every iteration, then compare:

    cd /work/main && PYTHONPATH=. python -m dynatss train configs/experiments/bccd_ablation.yaml \\
        solver.max_iter=20 train.eval_period=0 train.log_period=1 train.output_dir=/tmp/speed_before
    cd <branch> && PYTHONPATH=. python -m dynatss train ... train.output_dir=/tmp/speed_after
    PYTHONPATH=. python benchmarks/compare_losses.py /tmp/speed_before /tmp/speed_after

Prints a table (key, iterations compared, largest absolute and relative difference, at which
iteration) and exits 1 when a relative difference exceeds ``--rtol`` or the iterations differ.
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


def differences(before: dict[int, dict], after: dict[int, dict], key: str) -> tuple[float, float, int]:
    """Largest |a - b| and |a - b| / max(|a|, |b|) over the common iterations, and where the latter is."""
    worst_abs, worst_rel, where = 0.0, 0.0, 0
    for iteration in sorted(before.keys() & after.keys()):
        a, b = before[iteration].get(key), after[iteration].get(key)
        if a is None or b is None:
            continue
        gap = abs(a - b)
        relative = gap / max(abs(a), abs(b), 1e-12)
        worst_abs = max(worst_abs, gap)
        if relative > worst_rel:
            worst_rel, where = relative, iteration
    return worst_abs, worst_rel, where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="run directory (metrics.jsonl) of the reference code")
    parser.add_argument("after", type=Path, help="run directory of the changed code")
    parser.add_argument("--keys", default=",".join(DEFAULT_KEYS))
    parser.add_argument("--rtol", type=float, default=1e-3, help="largest relative difference accepted")
    args = parser.parse_args(argv)
    before, after = train_lines(args.before), train_lines(args.after)
    print(f"iterations: {len(before)} before, {len(after)} after, {len(before.keys() & after.keys())} in common\n")
    print("| key | largest abs. difference | largest rel. difference | at iteration |\n|---|---|---|---|")
    failed = sorted(before) != sorted(after)
    for key in args.keys.split(","):
        worst_abs, worst_rel, where = differences(before, after, key)
        print(f"| {key} | {worst_abs:.3g} | {worst_rel:.3g} | {where} |")
        failed |= worst_rel > args.rtol
    print(f"\n{'DIFFERENT' if failed else 'same'} within rtol {args.rtol:g}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
