"""Where training reports go: RUN_DIR/metrics.jsonl, TensorBoard (RUN_DIR/tb) and a tqdm bar.

Only the main process logs; on other ranks every method is a no-op. metrics.jsonl has one JSON
object per line ({"type": "train", ...} or {"type": "eval", ...}, see docs/engine.md).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dynatss.atomic import atomic_write_text

# Train-line keys that go to TensorBoard under "assign/" rather than "train/": the label
# assignment statistics the paper discusses (positives per GT, predicted vs anchor IoUs).
ASSIGN_KEYS = ("num_pos", "pos_per_gt", "mean_piou", "mean_aiou")


class WindowAverage:
    """Mean of each value over the iterations since the last log line (smoother than one step)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] += value
        self.count += 1

    def pop(self) -> dict[str, float]:
        means = {key: total / max(self.count, 1) for key, total in self.sums.items()}
        self.sums.clear()
        self.count = 0
        return means


def truncate_metrics(path: Path, last_iteration: int) -> None:
    """On resume, drop lines logged after the checkpoint (the killed run's lost iterations)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and _line_iter(line) <= last_iteration]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _line_iter(line: str) -> int:
    try:
        return int(json.loads(line).get("iter", 0))
    except (ValueError, AttributeError):
        return 0


class RunLogger:
    def __init__(self, run_dir: Path, *, enabled: bool, max_iter: int, start_iter: int) -> None:
        self.enabled = enabled
        self.metrics_path = run_dir / "metrics.jsonl"
        self.writer = None
        self.bar = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        truncate_metrics(self.metrics_path, start_iter)
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=start_iter + 1)
        self.bar = tqdm(total=max_iter, initial=start_iter, desc="train", dynamic_ncols=True, mininterval=1.0)

    def _append(self, line: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(line, allow_nan=True) + "\n")

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def train(self, iteration: int, values: dict[str, float]) -> None:
        """A training line: iteration (1-based, finished steps), lr, losses, assignment stats, speed."""
        if not self.enabled:
            return
        self._append({"type": "train", "iter": iteration, **values})
        for key, value in values.items():
            if math.isfinite(value):
                group = "assign" if key in ASSIGN_KEYS else "train"
                self.writer.add_scalar(f"{group}/{key}", value, iteration)
        self.bar.set_postfix(
            loss=f"{values['loss']:.3f}", lr=f"{values['lr']:.2e}", img_s=f"{values['images_per_s']:.1f}",
            refresh=False,
        )

    def eval(self, iteration: int, metrics: dict[str, float], per_class: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._append({"type": "eval", "iter": iteration, "metrics": metrics, "per_class": per_class})
        for key, value in metrics.items():
            self.writer.add_scalar(f"eval/{key}", value, iteration)
        self.writer.flush()

    def message(self, text: str) -> None:
        """A line of text that does not break the progress bar."""
        if self.enabled:
            tqdm.write(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
