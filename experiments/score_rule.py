"""Score rule of trained runs: the same checkpoints evaluated with score = cls x quality ** exponent.

Issue 17 asks whether cls x IoU double-counts the IoU once QFL has trained the class score towards
the PIoU. The exponent is an inference setting (``inference.quality_exponent``), so it needs no new
training: each run's last checkpoint is evaluated on its own evaluation split once per exponent,
and one JSON line per (run, exponent) is appended to OUTPUT (committed), which ``--report`` turns
into a table of mean AP and per-class AP over seeds.

    python experiments/score_rule.py runs/grid_v2/bccd/ciou_qfl_iou/seed2 ... --exponents 1,0.5,0 \
        --output docs/results/score_rule/bccd.jsonl
    python experiments/score_rule.py --report docs/results/score_rule/bccd.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

from dynatss.data.loader import build_test_loader
from dynatss.engine.build import load_split
from dynatss.engine.evaluate import evaluate
from dynatss.engine.inference import load_detector


def evaluate_exponents(run_dir: Path, exponents: list[float]) -> list[dict]:
    """One line per exponent: run, variant, seed, exponent, COCO metrics and per-class AP."""
    checkpoint = run_dir / "checkpoints" / "last.pth"
    lines = []
    for exponent in exponents:
        model, cfg, meta = load_detector(checkpoint, device="cpu", overrides=[f"inference.quality_exponent={exponent}"])
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, test_batch_size=1))
        split = load_split(cfg.data, cfg.data.val_split)
        loader = build_test_loader(split.records, cfg.data, batch_size=1)
        result = evaluate(model, loader, split.records, meta, cfg, torch.device("cpu"))
        lines.append({"run": str(run_dir), "variant": run_dir.parent.name, "seed": run_dir.name,
                      "exponent": exponent, "metrics": result.metrics, "per_class": result.per_class})
        print(f"{run_dir} exponent {exponent:g}: AP {100 * result.metrics['AP']:.1f}", flush=True)
    return lines


def report(path: Path) -> str:
    """Markdown: per variant and exponent, mean AP / AP50 / AP75 and per-class AP over seeds."""
    lines = [json.loads(text) for text in path.read_text().splitlines() if text.strip()]
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for line in lines:
        groups[(line["variant"], line["exponent"])].append(line)
    classes = sorted({name for line in lines for name in line["per_class"]})
    rows = ["| variant | exponent | seeds | AP | AP50 | AP75 | " + " | ".join(classes) + " |",
            "|---|---:|---:|---:|---:|---:|" + "---:|" * len(classes)]
    for (variant, exponent), group in sorted(groups.items(), key=lambda item: (item[0][0], -item[0][1])):
        def mean(values):
            return f"{100 * statistics.fmean(values):.1f}"
        cells = [mean([g["metrics"][key] for g in group]) for key in ("AP", "AP50", "AP75")]
        cells += [mean([g["per_class"][name] for g in group]) for name in classes]
        rows.append(f"| {variant} | {exponent:g} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run directories with checkpoints/last.pth")
    parser.add_argument("--exponents", default="1,0.5,0")
    parser.add_argument("--output", type=Path, help="JSON lines to append to")
    parser.add_argument("--report", type=Path, help="print the table of a JSON-lines file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.report:
        print(report(args.report))
        return 0
    exponents = [float(text) for text in args.exponents.split(",")]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for run_dir in args.runs:
        for line in evaluate_exponents(run_dir, exponents):
            with args.output.open("a") as file:
                file.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
