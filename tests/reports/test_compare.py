"""`dynatss compare`: curves as PNGs and a Markdown table equal to the runs' last eval lines."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
from torchvision.io import decode_image

from dynatss.cli.main import main
from dynatss.draw.curves import moving_average
from dynatss.errors import DynatssError
from dynatss.reports.compare import compare_runs, group_curve, group_runs
from dynatss.reports.runs import COCO_COLUMNS, read_run

from .fake_runs import write_fake_run

FIGURES = ("loss_box.png", "losses.png", "assignment.png")


def _last_eval(run_dir):
    lines = [json.loads(text) for text in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line["type"] == "eval"][-1]


def _table_rows(markdown: str) -> dict[str, list[str]]:
    """Row label -> cells of the metrics table."""
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_compare_two_runs_writes_figures_and_final_metrics(tmp_path):
    runs = [write_fake_run(tmp_path / "atss", mode="atss"), write_fake_run(tmp_path / "dynamic", mode="dynamic")]
    written = compare_runs(runs, tmp_path / "cmp")
    assert {p.name for p in written} == {*FIGURES, "compare.md"}
    for name in FIGURES:
        image = decode_image(str(tmp_path / "cmp" / name))
        assert image.shape[0] in (3, 4) and image.shape[1] > 200 and image.shape[2] > 200
        assert image.float().std() > 0  # not a blank canvas
    rows = _table_rows((tmp_path / "cmp" / "compare.md").read_text())
    assert set(rows) == {"atss", "dynamic"}
    for run in runs:
        final = _last_eval(run)
        cells = rows[run.name]
        assert int(cells[1]) == final["iter"]
        table_values = [float(cell) for cell in cells[2:]]
        np.testing.assert_allclose(table_values, [final["metrics"][c] for c in COCO_COLUMNS], atol=5e-4)


def test_group_by_config_averages_seeds(tmp_path):
    runs = [write_fake_run(tmp_path / f"{mode}_s{seed}", mode=mode, seed=seed)
            for mode in ("atss", "dynamic") for seed in (0, 1)]
    compare_runs(runs, tmp_path / "cmp", group_by_config=True)
    rows = _table_rows((tmp_path / "cmp" / "compare.md").read_text())
    assert set(rows) == {"assign.mode=atss (n=2)", "assign.mode=dynamic (n=2)"}
    for mode in ("atss", "dynamic"):
        finals = [_last_eval(tmp_path / f"{mode}_s{seed}")["metrics"]["AP"] for seed in (0, 1)]
        mean, std = (float(x) for x in rows[f"assign.mode={mode} (n=2)"][2].split("±"))
        assert mean == pytest.approx(statistics.fmean(finals), abs=5e-4)
        assert std == pytest.approx(statistics.stdev(finals), abs=5e-4)


def test_group_mean_curve_uses_common_iterations(tmp_path):
    a = write_fake_run(tmp_path / "a", seed=0)
    b = write_fake_run(tmp_path / "b", seed=1)
    lines = (b / "metrics.jsonl").read_text().splitlines()
    (b / "metrics.jsonl").write_text("\n".join(lines[1:]) + "\n")  # b lacks the first logged iteration
    (group,) = group_runs([read_run(a), read_run(b)], labels=["same", "same"])
    curve = group_curve(group, "loss_box")
    iters_a, values_a = read_run(a).series("loss_box")
    iters_b, values_b = read_run(b).series("loss_box")
    np.testing.assert_array_equal(curve.iters, iters_b)
    np.testing.assert_allclose(curve.values, (values_a[1:] + values_b) / 2)
    np.testing.assert_allclose(curve.spread, np.abs(values_a[1:] - values_b) / 2)


def test_read_run_tolerates_torn_line_and_resumed_iterations(tmp_path):
    run = write_fake_run(tmp_path / "r", log_period=5, max_iter=20)
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"type": "train", "iter": 10, "loss_box": 123.0}) + "\n")  # resumed run
        handle.write('{"type": "train", "iter": 25, "loss')  # killed mid-write
    log = read_run(run)
    iters, values = log.series("loss_box")
    assert list(iters) == [5, 10, 15, 20]
    assert values[1] == 123.0 and log.skipped_lines == 1


def test_moving_average_matches_loop():
    values = np.random.default_rng(0).random(37)
    expected = [values[max(0, i - 2) : i + 3].mean() for i in range(values.size)]  # centred
    np.testing.assert_allclose(moving_average(values, 5), expected)
    expected_even = [values[max(0, i - 1) : i + 3].mean() for i in range(values.size)]
    np.testing.assert_allclose(moving_average(values, 4), expected_even)


def test_compare_cli_errors_are_one_line(tmp_path, capsys):
    run = write_fake_run(tmp_path / "r")
    assert main(["compare", str(run), str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert main(["compare", str(run), "--labels", "x", "y", "--out", str(tmp_path / "o")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "missing" in errors[0] and "--labels" in errors[1]
    with pytest.raises(DynatssError):
        read_run(tmp_path)  # a folder without metrics.jsonl


def test_compare_cli_default_out_beside_runs(tmp_path, capsys):
    runs = [write_fake_run(tmp_path / "x"), write_fake_run(tmp_path / "y", mode="atss")]
    assert main(["compare", *map(str, runs), "--labels", "first", "second", "--smooth", "3"]) == 0
    rows = _table_rows((tmp_path / "compare" / "compare.md").read_text())
    assert set(rows) == {"first", "second"}
    assert "compare.md" in capsys.readouterr().out
