import json

from dynatss.cli.main import main


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_train_then_eval_from_the_command_line(tiny_config, tmp_path, capsys, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    run_dir = tmp_path / "cli-run"
    assert main(["train", str(tiny_config), "--output-dir", str(run_dir), "solver.base_lr=0.005"]) == 0
    out = capsys.readouterr().out
    assert "AP50" in out  # the final COCO table
    assert "base_lr: 0.005" in (run_dir / "config.yaml").read_text()
    weights = run_dir / "checkpoints" / "last.pth"
    assert weights.is_file()

    out_dir = tmp_path / "eval_out"
    assert main(["eval", "--config", str(tiny_config), "--weights", str(weights), "--split", "val",
                 "--out", str(out_dir)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    output = out_dir / "detections_val.json"
    assert "AP50" in out and str(output) in out
    detections = json.loads(output.read_text())
    assert isinstance(detections, list)
    assert all(set(d) == {"image_id", "category_id", "bbox", "score"} for d in detections)
    # the training run's final evaluation and the eval command agree on the detections
    assert detections == json.loads((run_dir / "eval" / "detections.json").read_text())
    # PR curves, confusion matrix and the per-class numbers beside the detections, the table printed
    assert "precision" in out and "recall" in out and "F1" in out
    for name in ("pr_curves_val.png", "confusion_matrix_val.png", "per_class_val.json"):
        assert (out_dir / name).is_file(), name

    # no config file: the checkpoint's own, with an override; written beside the run whatever the
    # current folder (RUN_DIR/eval), --output still accepted for --out
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["eval", "data.num_workers=0", "--weights", str(weights), "--split", "val"]) == 0
    assert "AP50" in capsys.readouterr().out
    assert json.loads((run_dir / "eval" / "detections_val.json").read_text()) == detections
    assert not list((tmp_path / "elsewhere").iterdir())
    assert main(["eval", "--weights", str(weights), "--split", "val", "--output", str(tmp_path / "o2")]) == 0
    assert json.loads((tmp_path / "o2" / "detections_val.json").read_text()) == detections


def test_eval_with_a_truncated_checkpoint_exits_2_with_one_line(tiny_config, tmp_path, capsys):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    assert main(["eval", "--config", str(tiny_config), "--weights", str(broken)]) == 2
    err = one_line_error(capsys)
    assert "broken.pth" in err and "checkpoint" in err


def test_eval_with_a_score_threshold_outside_0_1_exits_2(tiny_config, tmp_path, capsys):
    assert main(["eval", "--config", str(tiny_config), "--weights", str(tmp_path / "w.pth"),
                 "--score-threshold", "30"]) == 2
    assert "--score-threshold must be in [0, 1], got 30.0" in one_line_error(capsys)


def test_eval_with_a_missing_checkpoint_exits_2(tiny_config, tmp_path, capsys):
    assert main(["eval", "--config", str(tiny_config), "--weights", str(tmp_path / "nope.pth")]) == 2
    assert "nope.pth: checkpoint not found" in one_line_error(capsys)


def test_train_with_a_misspelt_override_exits_2_with_a_suggestion(tiny_config, capsys):
    assert main(["train", str(tiny_config), "solver.bse_lr=0.1"]) == 2
    assert "did you mean 'base_lr'" in one_line_error(capsys)


def test_train_with_a_missing_config_exits_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: config file not found" in one_line_error(capsys)


def test_eval_takes_the_config_as_an_option_not_a_positional(tiny_config, tmp_path, capsys):
    assert main(["eval", str(tiny_config), "--weights", str(tmp_path / "w.pth")]) == 2
    assert f"give the config as --config {tiny_config}" in one_line_error(capsys)


def test_version(capsys):
    import pytest

    from dynatss import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"dynatss {__version__}"
