"""`dynatss report`: Markdown/HTML report with metrics from metrics.jsonl, curves and sample predictions."""

from __future__ import annotations

import json
import shutil

from torchvision.io import decode_image

from dynatss.cli.main import main
from dynatss.reports.report import write_report

from .fake_runs import write_fake_run


def _evals(run_dir):
    lines = [json.loads(text) for text in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line["type"] == "eval"]


def test_report_on_fake_run(tmp_path):
    run = write_fake_run(tmp_path / "run", max_iter=400, eval_period=100)
    path = write_report(run, num_images=2)
    text = path.read_text()
    evals = _evals(run)
    final, best = evals[-1], max(evals, key=lambda line: line["metrics"]["AP"])
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in text.splitlines() if line.startswith("| ")}
    assert int(rows["final"][0]) == final["iter"]
    assert float(rows["final"][1]) == round(final["metrics"]["AP"], 3)
    assert int(rows["best AP"][0]) == best["iter"]
    assert float(rows["best AP"][1]) == round(best["metrics"]["AP"], 3)
    for name, ap in final["per_class"].items():
        assert float(rows[name][0]) == round(ap, 3)
    assert rows["assign.mode"][0].strip() == "dynamic"
    for figure in ("losses.png", "assignment.png"):
        assert f"report/{figure}" in text
        assert decode_image(str(run / "report" / figure)).shape[1] > 200
    assert "No checkpoint" in text  # no checkpoints/ in a fake run
    html = (run / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<table>") == 3


def test_report_cli_with_checkpoint_draws_validation_samples(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    write_fake_run(run, class_names=tiny_run.meta.class_names)
    assert main(["report", str(run), "--images", "2"]) == 0
    text = (run / "report.md").read_text()
    samples = sorted((run / "report").glob("sample_*.png"))
    assert [p.name for p in samples] == ["sample_00.png", "sample_01.png"]
    for sample in samples:
        assert f"report/{sample.name}" in text
        assert decode_image(str(sample)).shape[1:] == (96, 96)  # drawn on the original image
    assert "report.md" in capsys.readouterr().out
    # Where the detector fails: the checkpoint's PR curves, confusion matrix and per-class table.
    assert "## Where the detector fails" in text
    for figure in ("pr_curves_val.png", "confusion_matrix_val.png"):
        assert f"report/{figure}" in text
        assert decode_image(str(run / "report" / figure)).shape[1] > 300
    numbers = json.loads((run / "report" / "per_class_val.json").read_text())
    assert set(numbers["classes"]) == set(tiny_run.meta.class_names)
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in text.splitlines() if line.startswith("| ")}
    assert [cell.strip() for cell in rows["class"]][:3] == ["AP50", "AP", "TP"]
    for name, entry in numbers["classes"].items():
        assert int(rows[name][2]) == entry["tp"] and int(rows[name][4]) == entry["fn"]
