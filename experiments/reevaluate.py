"""Evaluate finished grid runs again, one image per batch (``data.test_batch_size`` 1).

Runs trained before evaluation became one image per batch were scored in batches of 8, where an
image is padded to the largest of its batch (docs/results.md). This evaluates each such run's last
checkpoint (in its scratch directory, runs/grid/<dataset>/<variant>/seed<k>/checkpoints/last.pth)
again and appends the new evaluation line, marked ``"test_batch_size": 1``, to its metrics.jsonl
in the scratch directory and in the committed archive; the results document reads the last
evaluation line. Runs whose last evaluation is already marked, or evaluated at batch 1 during
training, are left alone.

    python experiments/reevaluate.py --dataset aerial_cars [--scratch runs/grid]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynatss.config import config_from_dict  # noqa: E402
from dynatss.data.loader import build_test_loader  # noqa: E402
from dynatss.engine.build import load_split  # noqa: E402
from dynatss.engine.checkpoint import load_checkpoint, meta_from_dict  # noqa: E402
from dynatss.engine.evaluate import EvalResult, evaluate  # noqa: E402
from dynatss.engine.trained import load_trained  # noqa: E402
from experiments.ablation import RESULTS_DIR  # noqa: E402
from experiments.peers import build_peer, evaluate_peer  # noqa: E402

MARK = "test_batch_size"


def last_eval(metrics_path: Path) -> dict | None:
    evals = [json.loads(line) for line in metrics_path.read_text().splitlines() if '"eval"' in line]
    return evals[-1] if evals else None


def evaluated_one_by_one(run_dir: Path, line: dict) -> bool:
    """Marked by this script, or trained by a version that evaluated one image per batch."""
    if line.get(MARK) == 1:
        return True
    config = run_dir / "config.yaml"
    return config.is_file() and "test_batch_size: 1" in config.read_text()


def reevaluate(checkpoint: Path) -> EvalResult:
    """The checkpoint's model (ours or a torchvision peer) on its own evaluation split, batch 1."""
    data = load_checkpoint(checkpoint)
    if "peer" in data:
        cfg = config_from_dict(data["config"], checkpoint)
        model = build_peer(data["peer"], cfg)
        model.load_state_dict(data["model"])
        split = load_split(cfg.data, cfg.data.val_split)
        loader = build_test_loader(split.records, cfg.data, batch_size=1)
        return evaluate_peer(model.eval(), loader, split.records, meta_from_dict(data["meta"]))
    model, cfg, meta = load_trained(checkpoint, device="cpu")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, test_batch_size=1))
    split = load_split(cfg.data, cfg.data.val_split)
    loader = build_test_loader(split.records, cfg.data, batch_size=1)
    return evaluate(model, loader, split.records, meta, cfg, torch.device("cpu"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--scratch", type=Path, default=Path("runs/grid"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for archived in sorted((RESULTS_DIR / args.dataset).glob("*/seed*")):
        scratch = args.scratch / args.dataset / archived.parent.name / archived.name
        line = last_eval(archived / "metrics.jsonl")
        if line is None or evaluated_one_by_one(scratch, line):
            continue
        checkpoint = scratch / "checkpoints" / "last.pth"
        if not checkpoint.is_file():
            print(f"{archived}: no checkpoint at {checkpoint}; left as it is")
            continue
        result = reevaluate(checkpoint)
        new = {"type": "eval", "iter": line["iter"], "metrics": result.metrics, "per_class": result.per_class, MARK: 1}
        for path in (scratch / "metrics.jsonl", archived / "metrics.jsonl"):
            with path.open("a") as file:
                file.write(json.dumps(new) + "\n")
        print(f"{archived}: AP {100 * line['metrics']['AP']:.1f} at batch 8 -> {100 * result.metrics['AP']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
