"""Hand-made run directories (config.yaml + metrics.jsonl) shaped like the engine's."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import yaml


def write_fake_run(
    run_dir: Path,
    *,
    mode: str = "dynamic",
    seed: int = 0,
    max_iter: int = 200,
    log_period: int = 5,
    eval_period: int = 100,
    class_names: tuple[str, ...] = ("circle", "square"),
) -> Path:
    """A run whose losses decay with noise; ``mode`` sets assign.mode and the final AP."""
    rng = random.Random(hash((mode, seed)))
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model": {"backbone": "resnet18", "quality": "iou", "num_classes": len(class_names)},
        "assign": {"mode": mode, "topk": 9},
        "loss": {"classification": "qfl"},
        "data": {"format": "synthetic", "root": "/nonexistent/dynatss-fake-data"},
        "solver": {"max_iter": max_iter, "batch_size": 4, "base_lr": 0.01},
        "train": {"seed": seed, "output_dir": str(run_dir), "log_period": log_period},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    lines = []
    gain = 0.8 if mode == "dynamic" else 1.0
    for it in range(log_period, max_iter + 1, log_period):
        decay = math.exp(-it / max_iter * 2)
        noise = 1 + 0.2 * (rng.random() - 0.5)
        lines.append({
            "type": "train", "iter": it, "lr": 0.01, "loss": 3 * decay * noise,
            "loss_cls": 1.0 * decay * noise, "loss_box": gain * 0.9 * decay * noise + 0.1,
            "loss_quality": 0.6 * decay * noise + 0.05, "num_pos": 40.0,
            "pos_per_gt": 6 + rng.random(), "mean_piou": 0.3 + 0.5 * (1 - decay),
            "mean_aiou": 0.5 + 0.05 * rng.random(), "images_per_s": 10.0,
        })
        if it % eval_period == 0:
            ap = rng.uniform(0.2, 0.4) + (0.05 if mode == "dynamic" else 0.0)
            metrics = {"AP": ap, "AP50": ap + 0.2, "AP75": ap - 0.05, "APs": ap / 2, "APm": ap,
                       "APl": ap * 1.2, "AR1": ap, "AR10": ap, "AR100": ap}
            per_class = {name: ap + 0.01 * k for k, name in enumerate(class_names)}
            lines.append({"type": "eval", "iter": it, "metrics": metrics, "per_class": per_class})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run_dir
