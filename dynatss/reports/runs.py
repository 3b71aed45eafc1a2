"""Read a run directory written by the engine: config.yaml, metrics.jsonl and checkpoints.

metrics.jsonl holds one JSON object per line: ``{"type": "train", "iter", "loss_box", ...}`` and
``{"type": "eval", "iter", "metrics": {"AP", ...}, "per_class": {name: AP}}``. A run resumed from a
checkpoint may log an iteration twice; the later line wins. A torn last line (a run killed while
writing) is skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dynatss.errors import DynatssError

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
# The COCO summary columns shown in tables, in the paper's order (Tables I-V).
COCO_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Checkpoints used for sample predictions, in order of preference.
CHECKPOINT_PREFERENCE = ("best.pth", "last.pth", "model_final.pth")


@dataclass(frozen=True)
class RunLog:
    """One run's logged lines; ``train`` and ``evals`` sorted by iteration, one line per iteration."""

    run_dir: Path
    name: str
    config: dict[str, Any]
    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    skipped_lines: int = 0

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(iters [N], values [N])`` of a training-line key; lines without a finite value are left out."""
        points = [(line["iter"], line[key]) for line in self.train if _is_number(line.get(key))]
        if not points:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        iters, values = zip(*points)
        return np.asarray(iters, np.int64), np.asarray(values, np.float64)

    @property
    def final_eval(self) -> dict[str, Any] | None:
        return self.evals[-1] if self.evals else None

    @property
    def best_eval(self) -> dict[str, Any] | None:
        """The evaluation with the highest AP (the last one among ties)."""
        scored = [line for line in self.evals if _is_number(line.get("metrics", {}).get("AP"))]
        return max(reversed(scored), key=lambda line: line["metrics"]["AP"]) if scored else None

    def checkpoint(self) -> Path | None:
        """The best checkpoint if there is one, else the last."""
        for name in CHECKPOINT_PREFERENCE:
            path = self.run_dir / "checkpoints" / name
            if path.is_file():
                return path
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_run(run_dir: str | Path, *, name: str | None = None) -> RunLog:
    """Read ``run_dir``'s metrics.jsonl (required) and config.yaml (optional)."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS_FILE
    if not run_dir.is_dir():
        raise DynatssError(f"{run_dir}: not a run directory")
    if not metrics_path.is_file():
        raise DynatssError(f"{metrics_path}: not found (is {run_dir} a training run directory?)")
    by_type: dict[str, dict[int, dict[str, Any]]] = {"train": {}, "eval": {}}
    skipped = 0
    for text in metrics_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if isinstance(line, dict) and line.get("type") in by_type and _is_number(line.get("iter")):
            by_type[line["type"]][int(line["iter"])] = line  # a resumed run's later line wins
    train = [by_type["train"][i] for i in sorted(by_type["train"])]
    evals = [by_type["eval"][i] for i in sorted(by_type["eval"])]
    return RunLog(run_dir, name or run_dir.resolve().name, read_config_dict(run_dir), train, evals, skipped)


def read_config_dict(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config as a plain dict ({} when config.yaml is absent)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise DynatssError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    return data if isinstance(data, dict) else {}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become tuples so values are hashable."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = tuple(value) if isinstance(value, list) else value
    return flat
