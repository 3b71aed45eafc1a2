"""Resume cannot destroy a run, and is honest about settings (issue 18, items 1 and 3).

One tiny run (6 iterations, checkpoints and evaluations at 3 and 6, cosine schedule, anchors chosen
from the data) is trained once; each test damages a copy of it the way a user or a crash would and
resumes it in this process.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch
import yaml

from dynatss.config import SolverConfig
from dynatss.engine.checkpoint import load_checkpoint, save_checkpoint
from dynatss.engine.lr_schedule import lr_factor, scaled_lr
from tests.engine.tiny import make_synthetic, tiny_overrides
from tests.robust.conftest import one_line_error

MAX_ITER = 6


def overrides(data, run, *extra):
    """The base run's settings (the same command resumes it), then ``extra``."""
    settings = ["train.checkpoint_period=3", "train.eval_period=3", "train.keep_last=3", "solver.schedule=cosine",
                "model.anchor_scales=auto"]  # fmt: skip
    return [*tiny_overrides(data, run, max_iter=MAX_ITER), *settings, *extra]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """(data root, finished run directory) of the tiny run."""
    base = tmp_path_factory.mktemp("resume")
    data = make_synthetic(base / "data")
    from dynatss.cli.main import main

    assert main(["train", "/dev/null", *overrides(data, base / "run")]) == 0
    return data, base / "run"


@pytest.fixture
def run(base_run, tmp_path):
    """(data root, a copy of the finished run to damage; last.pth as the run wrote it)."""
    data, source = base_run
    copy = tmp_path / "run"
    shutil.copytree(source, copy)
    return data, copy


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _resume(run_cli, data, run, *extra):
    return run_cli(["train", "/dev/null", *overrides(data, run, *extra), "--resume"])


def _truncate(path):
    size = path.stat().st_size
    with open(path, "r+b") as handle:  # in place: a hard-linked twin is damaged too
        handle.truncate(size // 2)


def _readable(path):
    try:
        load_checkpoint(path)
    except Exception:
        return False
    return True


def _best_ap(run):
    return load_checkpoint(run / "checkpoints" / "best.pth")["metrics"]["AP"]


def _assert_log_kept(run, lines_before, upto):
    """metrics.jsonl keeps the lines up to ``upto`` byte for byte and then holds each iteration once."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    kept = [line for line in lines_before if json.loads(line)["iter"] <= upto]
    assert lines[: len(kept)] == kept
    train_iters = [json.loads(line)["iter"] for line in lines if json.loads(line)["type"] == "train"]
    assert train_iters == list(range(1, train_iters[-1] + 1))


def test_last_pth_is_its_own_file(base_run):
    checkpoints = base_run[1] / "checkpoints"
    last, newest = checkpoints / "last.pth", checkpoints / f"model_{MAX_ITER:07d}.pth"
    assert not os.path.samefile(last, newest)
    assert last.read_bytes() == newest.read_bytes()


def test_resume_without_last_pth_continues_from_the_newest_checkpoint(run, run_cli):
    data, run = run
    (run / "checkpoints" / "last.pth").unlink()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    best, best_ap = (run / "checkpoints" / "best.pth").read_bytes(), _best_ap(run)
    code, out, err = _resume(run_cli, data, run, "solver.max_iter=8")
    assert code == 0, err
    assert "model_0000006.pth" in out and "iteration 6" in out and "starting from iteration 0" not in out
    _assert_log_kept(run, lines, 6)
    assert (run / "checkpoints" / "best.pth").read_bytes() == best or _best_ap(run) > best_ap
    # the schedule follows the extension: the lr of step 7 is the cosine of 8 steps, not of 6
    solver = SolverConfig(**{**yaml.safe_load((run / "config.yaml").read_text())["solver"]})
    assert solver.max_iter == 8
    logged = {line["iter"]: line for line in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    assert math.isclose(logged[7]["lr"], scaled_lr(solver) * lr_factor(6, solver), rel_tol=1e-6)
    assert load_checkpoint(run / "checkpoints" / "last.pth")["config"]["solver"]["max_iter"] == 8


def test_resume_with_last_pth_truncated_names_it_and_uses_the_newest_readable_one(run, run_cli):
    data, run = run
    checkpoints = run / "checkpoints"
    _truncate(checkpoints / "last.pth")
    expected = "model_0000006.pth" if _readable(checkpoints / "model_0000006.pth") else "model_0000003.pth"
    code, out, err = _resume(run_cli, data, run, "solver.max_iter=8")
    assert code == 0, err
    notice = next(line for line in out.splitlines() if line.startswith("resume: continuing from"))
    assert "last.pth" in notice and "not readable" in notice and expected in notice, out


@pytest.mark.parametrize("damage", ["truncated", "removed"])
def test_resume_without_a_readable_checkpoint_refuses_and_changes_nothing(run, run_cli, damage):
    data, run = run
    for path in (run / "checkpoints").glob("*.pth"):
        if path.name != "best.pth":
            _truncate(path) if damage == "truncated" else path.unlink()
    before = _snapshot(run)
    code, _, err = _resume(run_cli, data, run)
    assert code == 2
    one_line_error(err, str(run), "no readable checkpoint", "--overwrite")
    assert _snapshot(run) == before


def test_a_run_with_a_hard_linked_last_pth_still_resumes(run, run_cli):
    data, run = run
    checkpoints = run / "checkpoints"
    (checkpoints / "last.pth").unlink()
    os.link(checkpoints / "model_0000006.pth", checkpoints / "last.pth")  # the layout of earlier versions
    older = (checkpoints / "model_0000006.pth").read_bytes()
    code, out, err = _resume(run_cli, data, run, "solver.max_iter=8")
    assert code == 0, err
    assert "at iteration 6" in out
    assert (checkpoints / "model_0000006.pth").read_bytes() == older
    assert load_checkpoint(checkpoints / "last.pth")["iter"] == 8


def test_resume_never_replaces_best_pth_with_a_worse_model(run, run_cli):
    data, run = run
    checkpoints = run / "checkpoints"
    best = load_checkpoint(checkpoints / "best.pth")
    best["metrics"]["AP"] = 0.99  # a best model the resumed run cannot beat
    save_checkpoint(best, checkpoints / "best.pth")
    for name in ("last.pth", "model_0000006.pth"):  # a checkpoint saved before that evaluation
        state = load_checkpoint(checkpoints / name)
        state["best_ap"] = -1.0
        save_checkpoint(state, checkpoints / name)
    before = (checkpoints / "best.pth").read_bytes()
    code, _, err = _resume(run_cli, data, run, "solver.max_iter=8")
    assert code == 0, err
    assert (checkpoints / "best.pth").read_bytes() == before


def test_resume_with_changed_training_settings_is_refused_listing_them(run, run_cli):
    data, run = run
    before = _snapshot(run)
    code, _, err = _resume(run_cli, data, run, "solver.base_lr=0.5", "data.min_sizes=[160]")
    assert code == 2
    one_line_error(err, "solver.base_lr 0.01 -> 0.5", "data.min_sizes [96] -> [160]", "--resume")
    assert _snapshot(run) == before


@pytest.mark.parametrize("max_iter", [4, MAX_ITER])
def test_resume_to_at_most_the_checkpoint_says_the_run_is_complete(run, run_cli, max_iter):
    data, run = run
    before = _snapshot(run)
    code, out, err = _resume(run_cli, data, run, f"solver.max_iter={max_iter}")
    assert code == 0, err
    assert f"complete at iteration {MAX_ITER}" in out
    assert _snapshot(run) == before


def test_resume_may_change_how_the_run_is_watched_and_records_it(run, run_cli):
    data, run = run
    code, out, err = _resume(run_cli, data, run, "solver.max_iter=7", "train.log_period=2", "data.num_workers=1")
    assert code == 0, err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["solver"]["max_iter"], saved["train"]["log_period"], saved["data"]["num_workers"]) == (7, 2, 1)
    assert torch.equal(load_checkpoint(run / "checkpoints" / "last.pth")["model"]["head.cls_logits.weight"],
                       load_checkpoint(run / "checkpoints" / "model_0000007.pth")["model"]["head.cls_logits.weight"])


@pytest.mark.slow
def test_a_schedule_in_epochs_resumes_with_the_same_command_and_extends_keeping_its_steps(base_run, tmp_path,
                                                                                         run_cli):  # fmt: skip
    data, run = base_run[0], tmp_path / "epochs"
    # 2.5 epochs of 16 images at batch 4: 10 steps, decays at 2/3 and 8/9 of them (issue 17).
    epochs = ["solver.epochs=2.5", "solver.min_iter=0", "train.eval_period=0", "train.checkpoint_period=10"]
    assert run_cli(["train", "/dev/null", *overrides(data, run, *epochs)])[0] == 0
    steps = yaml.safe_load((run / "config.yaml").read_text())["solver"]["steps"]
    code, out, err = _resume(run_cli, data, run, *epochs)  # the same command: resolved alike, not refused
    assert code == 0 and "complete at iteration 10" in out, err
    code, _, err = _resume(run_cli, data, run, *epochs, "solver.epochs=5")
    assert code == 2
    written = str(steps).replace(" ", "")  # [7,9]: one command-line argument
    one_line_error(err, "solver.steps", f"solver.epochs=null solver.max_iter=N solver.steps={written}")
    extend = ["solver.epochs=null", "solver.max_iter=11", f"solver.steps={written}"]
    code, out, err = _resume(run_cli, data, run, *epochs, *extend)
    assert code == 0 and "at iteration 10" in out, err
    assert load_checkpoint(run / "checkpoints" / "last.pth")["iter"] == 11
