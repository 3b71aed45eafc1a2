"""Run directories (issue 11): no silent overwrite, nothing written before the checks pass, no stale
temporaries, and a report that reads its own run's data wherever it is opened from."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from PIL import Image

from dynatss.config import Config
from dynatss.data.records import DatasetMeta
from dynatss.engine.evaluate import split_records
from dynatss.engine.run_dir import start_run_dir
from dynatss.errors import DynatssError
from tests.data.helpers import write_coco
from tests.engine.tiny import make_synthetic, tiny_overrides
from tests.robust.conftest import one_line_error
from tests.robust.odd_images import write_png16, write_truncated_jpeg


def _snapshot(folder):
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def old_run(tmp_path):
    """A run directory holding a (fake) earlier run."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("old: config\n")
    (run / "metrics.jsonl").write_text('{"type": "train", "iter": 10}\n')
    (run / "checkpoints" / "best.pth").write_bytes(b"old best")
    return run


def test_train_into_an_existing_run_refuses_and_changes_nothing(old_run, tmp_path, run_cli):
    before = _snapshot(old_run)
    code, _, err = run_cli(["train", "/dev/null", *tiny_overrides(tmp_path / "no-data", old_run)])
    assert code == 2
    one_line_error(err, str(old_run), "--resume", "--overwrite")
    assert _snapshot(old_run) == before
    code, _, err = run_cli(["train", "/dev/null", "--resume", "--overwrite", f"train.output_dir={old_run}"])
    one_line_error(err, "--resume and --overwrite")


def test_a_start_that_fails_its_checks_writes_nothing(old_run, tmp_path, run_cli):
    synthetic = make_synthetic(tmp_path / "data")
    torch.save({"model": {"weight": torch.zeros(3)}, "iter": 5}, old_run / "checkpoints" / "last.pth")
    before = _snapshot(old_run)
    code, _, err = run_cli(["train", "/dev/null", "--resume", *tiny_overrides(synthetic, old_run)])
    assert code == 2
    one_line_error(err, "last.pth", "cannot resume", "missing", "unexpected, e.g. weight")
    assert _snapshot(old_run) == before  # config.yaml and metrics.jsonl untouched
    code, _, err = run_cli(["train", "/dev/null", "--overwrite", *tiny_overrides(tmp_path / "gone", old_run),
                            "data.format=coco"])
    one_line_error(err, "gone", "dataset folder not found")
    assert _snapshot(old_run) == before  # --overwrite deletes only once every check has passed


def test_overwrite_deletes_only_the_runs_own_files(old_run):
    (old_run / "tb").mkdir()
    (old_run / "tb" / "events").write_bytes(b"x")
    (old_run / "log.txt").write_text("launcher log")
    (old_run / "data").mkdir()
    (old_run / "data" / "cached.png").write_bytes(b"data")
    start_run_dir(old_run, overwrite=True)
    assert sorted(p.name for p in old_run.iterdir()) == ["checkpoints", "data", "log.txt"]
    assert list((old_run / "checkpoints").iterdir()) == []


def test_temporaries_of_a_killed_run_are_removed_at_the_next_start(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    stale = checkpoints / f".model_0000100.pth.tmp{dead_pid}"
    live = checkpoints / f".last.pth.tmp{__import__('os').getpid()}"
    other = checkpoints / "notes.tmp1"
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    start_run_dir(tmp_path / "run", overwrite=False)
    assert not stale.exists() and live.exists() and other.exists()


def test_odd_images_do_not_stop_a_run_and_the_run_records_its_data(tmp_path, run_cli, monkeypatch):
    spec = [(f"{i}.png", (48, 40), [(2, 3, 30, 25, i % 2, False)]) for i in range(6)]
    spec += [("wide.png", (4000, 4), [(100, 0, 900, 4, 0, False)]), ("deep.png", (80, 60), [(5, 5, 50, 40, 1, False)]),
             ("cut.jpg", (48, 64), [(1, 1, 20, 20, 0, False)])]  # fmt: skip
    root = write_coco(tmp_path / "data", spec)
    Image.new("RGB", (4000, 4)).save(root / "train" / "wide.png")
    write_png16(root / "train" / "deep.png", 60, 80, 3)
    write_truncated_jpeg(root / "train" / "cut.jpg")
    run = tmp_path / "run"
    overrides = [o for o in tiny_overrides(root, run, max_iter=2) if not o.startswith(("data.format", "data.val"))]
    overrides += ["data.format=coco", "data.val_split=train", "train.eval_period=2", "train.checkpoint_period=2"]
    code, out, err = run_cli(["train", "/dev/null", *overrides])
    assert code == 0, err
    assert "8 images; 1 problem" in out and "cut.jpg" in out  # found before the first step: one line
    assert "left out of the evaluation" in err  # the validation read (headers only) meets it later
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["root"] == str(root.resolve())

    monkeypatch.chdir(tmp_path / "run")  # report from elsewhere reads the run's own data
    code, _, err = run_cli(["report", run, "--images", "1"])
    assert code == 0 and "skipped" not in err
    (root / "annotations" / "instances_train.json").rename(root / "moved.json")
    code, _, err = run_cli(["report", run, "--images", "1"])
    assert code == 0 and "sample predictions skipped" in err and "instances_train.json" in err


def test_report_of_an_old_run_with_a_relative_root_checks_the_classes(tmp_path, monkeypatch):
    cfg = Config()
    cfg.data.format, cfg.data.root, cfg.data.val_split = "coco", "data", "train"
    meta = DatasetMeta(("wolf", "sheep"), (1, 2))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DynatssError, match=r"data.root data \(relative to .*\) no longer exists"):
        split_records(cfg, meta, cfg.data.val_split)
    write_coco(tmp_path / "data")  # another dataset at the same relative path
    with pytest.raises(DynatssError, match=r"holds classes \['cat', 'dog'\], not this model's \['wolf', 'sheep'\]"):
        split_records(cfg, meta, cfg.data.val_split)
