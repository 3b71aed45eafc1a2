import json
import math

import pytest
import torch

from dynatss.config import load_config
from dynatss.engine import checkpoint as ckpt
from dynatss.engine.build import build_criterion, build_model
from dynatss.engine.train import train
from dynatss.errors import DynatssError

from .tiny import tiny_overrides

TRAIN_KEYS = {"type", "iter", "lr", "loss", "loss_cls", "loss_box", "loss_quality", "num_pos", "pos_per_gt",
              "mean_piou", "mean_aiou", "images_per_s", "grad_norm"}  # fmt: skip


def test_training_writes_the_run_directory(synthetic_root, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(synthetic_root, run_dir, max_iter=4) + [
        "train.checkpoint_period=1", "train.keep_last=3", "train.eval_period=2", "train.log_period=2",
        "solver.ema_decay=0.9",
    ]  # fmt: skip
    result = train(load_config(None, overrides))

    assert result.iteration == 4
    saved = load_config(run_dir / "config.yaml")
    assert saved.model.num_classes == 4  # from the dataset, not the default 80
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if line["type"] == "train"]
    assert [line["iter"] for line in train_lines] == [2, 4]
    assert set(train_lines[0]) == TRAIN_KEYS
    assert train_lines[0]["num_pos"] > 0 and 0 < train_lines[0]["mean_aiou"] <= 1
    assert all(math.isfinite(line["grad_norm"]) and line["grad_norm"] > 0 for line in train_lines)
    evals = [line for line in lines if line["type"] == "eval"]
    assert [line["iter"] for line in evals] == [2, 4]
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"} <= set(evals[0]["metrics"])
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))

    checkpoints = run_dir / "checkpoints"
    assert [i for i, _ in ckpt.periodic_checkpoints(checkpoints)] == [2, 3, 4]  # keep_last=3
    last = ckpt.load_checkpoint(checkpoints / "last.pth")
    assert last["iter"] == 4 and last["ema"] is not None
    assert set(last) >= {"model", "optimizer", "scheduler", "scaler", "ema", "iter", "rng", "config", "meta"}
    best = ckpt.load_checkpoint(checkpoints / "best.pth")
    assert best["metrics"]["AP"] == pytest.approx(max(e["metrics"]["AP"] for e in evals))
    # best.pth holds the evaluated weights: the EMA's at the best evaluation, not the raw model's
    at_best = ckpt.load_checkpoint(checkpoints / ckpt.PERIODIC_NAME.format(best["iter"]))
    ema_weights = ckpt.inference_state_dict(at_best)
    assert all(torch.equal(best["model"][k], ema_weights[k]) for k in best["model"])
    assert not all(torch.equal(best["model"][k], at_best["model"][k]) for k in best["model"])
    detections = json.loads((run_dir / "eval" / "detections.json").read_text())
    assert all(d["category_id"] in last["meta"]["category_ids"] for d in detections)


class NaNAfter:
    """The real criterion, returning a NaN loss from the ``bad_iteration``-th call (1-based) on."""

    def __init__(self, criterion, bad_iteration: int) -> None:
        self.criterion, self.bad_iteration, self.calls = criterion, bad_iteration, 0

    def __call__(self, outputs, batch, progress):
        self.calls += 1
        result = self.criterion(outputs, batch, progress)
        if self.calls >= self.bad_iteration:
            result.total = result.total * float("nan")
        return result


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(synthetic_root, tmp_path):
    run_dir = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(synthetic_root, run_dir, max_iter=6) + ["train.checkpoint_period=2"])
    cfg.model.num_classes = 4
    criterion = NaNAfter(build_criterion(cfg, build_model(cfg, torch.device("cpu"))), bad_iteration=4)
    with pytest.raises(DynatssError, match="iteration 4") as error:
        train(cfg, criterion_override=criterion)
    assert "\n" not in str(error.value) and "nan" in str(error.value)
    last = ckpt.load_checkpoint(run_dir / "checkpoints" / "last.pth")
    assert last["iter"] == 2
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("override", ["train.log_period=0", "solver.max_iter=0", "train.keep_last=0"])
def test_schedule_values_that_cannot_work_are_rejected(override, tmp_path):
    with pytest.raises(DynatssError, match=override.split("=")[0]):
        train(load_config(None, [override, f"train.output_dir={tmp_path}"]))


def test_anchors_and_schedule_resolved_from_the_data_are_what_the_run_saves(synthetic_root, tmp_path, capsys):
    """anchor_scales auto and solver.epochs: train prints its choice and config.yaml holds the values used."""
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(synthetic_root, run_dir) + [
        "model.anchor_scales=auto", "solver.epochs=0.5", "solver.min_iter=0", "solver.step_fractions=[0.5]",
    ]  # fmt: skip
    result = train(load_config(None, overrides))
    saved = load_config(run_dir / "config.yaml")
    # 16 images x 0.5 epochs / batch 4 = 2 steps, rounded to the nearest 10 and at least 1 -> 1.
    assert result.iteration == saved.solver.max_iter == 1 and saved.solver.steps == [0]
    assert saved.model.anchor_scales in ([4.0], [8.0])
    printed = capsys.readouterr().out
    assert f"anchors: auto -> {saved.model.anchor_scales[0]:g} x stride" in printed
    assert "schedule: 0.5 epochs of 16 images" in printed
