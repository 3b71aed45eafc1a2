"""The ablation grid's bookkeeping: variants -> valid configs, results aggregated over seeds, the document."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from dynatss.config import load_config
from dynatss.engine.run_lock import RunDirLock
from dynatss.errors import DynatssError
from experiments import results_doc
from experiments.ablation import (
    BASE_CONFIG,
    RESULTS_DIR,
    dataset_overrides,
    run_command,
    run_grid,
    set_aside_unresumable,
    variant_overrides,
    with_resolved_schedule,
)
from experiments.paired import paired_difference
from experiments.results_checks import FULL
from experiments.results_doc import (
    Row,
    collect,
    final_metrics,
    render_paired,
    render_table,
    write_results,
)
from experiments.variants import VARIANTS, find_variants

COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _metrics(ap: float) -> dict[str, float]:
    return {"AP": ap, "AP50": ap + 0.2, "AP75": ap - 0.05, "APs": -1.0, "APm": ap / 2, "APl": ap + 0.01}


def _fake_run(run_dir: Path, *, ap: float | None, max_iter: int, wall_s: float = 120.0) -> None:
    """A run directory as the engine writes it: config, train lines, an eval line (if finished), run.json."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"solver:\n  max_iter: {max_iter}\n")
    lines = [{"type": "train", "iter": i, "loss_box": 1.0 / i, "mean_piou": 0.5 + i / 100} for i in (10, 20)]
    if ap is not None:
        lines.append({"type": "eval", "iter": max_iter, "metrics": _metrics(ap), "per_class": {}})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    info = {"command": "python -m dynatss train x.yaml", "threads": 1, "returncode": 0 if ap is not None else 1,
            "started": 0.0, "wall_s": wall_s, "machine": {"cores": 2}}
    (run_dir / "run.json").write_text(json.dumps(info))


@pytest.mark.parametrize("dataset", ["bccd", "aquarium", "aerial_cars"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_variant_loads_a_valid_config_on_every_dataset(variant, dataset):
    data, overrides = dataset_overrides(dataset), variant_overrides(variant)
    cfg = load_config(BASE_CONFIG, [*data, *overrides])
    for text in [*data, *overrides]:  # each override took effect on the loaded config
        dotted, value = text.split("=", 1)
        section, key = dotted.split(".")
        if text in overrides or not any(o.startswith(dotted + "=") for o in overrides):
            loaded = getattr(getattr(cfg, section), key)
            assert str(loaded) == value or (isinstance(loaded, float) and loaded == float(value))  # 9 -> 9.0
    assert (variant.peer is None) == bool(overrides)


@pytest.mark.parametrize("dataset", ["bccd", "aquarium", "aerial_cars"])
def test_the_committed_grid_counts_as_done_under_the_dataset_config(dataset):
    """The grid resolves each dataset's schedule from its data: if it no longer ends where the committed
    runs ended (the recipe's default epochs changed, unpinned), the grid would run them all again."""
    if not (SHARED_DATA / dataset).is_dir():
        pytest.skip(f"{dataset} not found at {SHARED_DATA / dataset}")
    cfg = with_resolved_schedule(load_config(BASE_CONFIG, [*dataset_overrides(dataset),
                                                           f"data.root={SHARED_DATA / dataset}"]))
    for variant in ("atss", FULL, "tv_fcos"):
        assert final_metrics(RESULTS_DIR / dataset / variant / "seed0", cfg.solver.max_iter) is not None, variant


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(DynatssError, match="aerial_cars"):
        dataset_overrides("nope")


def test_variant_overrides_follow_the_ablation_files():
    atss, full, piou = find_variants(["atss", "ciou_qfl_iou", "piou_only"])
    # The paper's rows pin the paper's box weights and positives: the recipe's are uniform and capped.
    assert set(variant_overrides(atss)) == {"model.quality=centerness", "assign.mode=atss", "loss.classification=focal",
                                            "loss.box_weighting=quality", "assign.max_positives=threshold"}
    assert set(variant_overrides(full)) == {"model.quality=iou", "assign.mode=dynamic", "loss.classification=qfl",
                                            "loss.box_weighting=quality", "assign.max_positives=threshold"}
    assert "assign.mode=piou" in variant_overrides(piou)
    (ema,) = find_variants(["ciou_qfl_iou_uniform_ema"])  # a solver setting is part of the variant
    assert set(variant_overrides(ema)) == {*variant_overrides(find_variants(["ciou_qfl_iou_uniform"])[0]),
                                           "solver.ema_decay=0.99", "solver.ema_tau=0.0"}
    (ramped,) = find_variants(["ciou_qfl_iou_uniform_cap50_ema"])  # the recipe, averaged with the ramp
    assert set(variant_overrides(ramped)) == {*variant_overrides(find_variants(["ciou_qfl_iou_uniform_cap50"])[0]),
                                              "solver.ema_decay=0.98", "solver.ema_tau=25.0"}
    with pytest.raises(DynatssError, match="unknown"):
        find_variants(["atss", "nope"])


def test_run_command_puts_seed_and_run_dir_last(tmp_path):
    atss, fcos = find_variants(["atss", "tv_fcos"])
    command = run_command(atss, base_config=BASE_CONFIG, seed=3, run_dir=tmp_path / "r", extra=["solver.max_iter=7"],
                          dataset=["data.root=x", "model.quality=iou"])
    assert command[1:4] == ["-m", "dynatss", "train"]
    assert command[-3:] == ["train.seed=3", f"train.output_dir={tmp_path / 'r'}", "--resume"]
    assert "solver.max_iter=7" in command and "assign.mode=atss" in command
    # The order is base < dataset < variant < command line: the variant's quality branch wins.
    assert command.index("model.quality=iou") < command.index("model.quality=centerness") < command.index(
        "solver.max_iter=7")
    peer = run_command(fcos, base_config=BASE_CONFIG, seed=0, run_dir=tmp_path / "p", extra=[])
    assert peer[1].endswith("peers.py") and peer[2] == "fcos"
    assert not any(part.startswith("assign.") for part in peer)


def test_rows_aggregate_mean_and_sample_std_over_seeds(tmp_path):
    atss, ciou = find_variants(["atss", "atss_ciou"])
    aps = {0: 0.30, 1: 0.34, 2: 0.35}
    for seed, ap in aps.items():
        _fake_run(tmp_path / "atss" / f"seed{seed}", ap=ap, max_iter=50)
    _fake_run(tmp_path / "atss_ciou" / "seed0", ap=0.40, max_iter=50)
    _fake_run(tmp_path / "atss_ciou" / "seed1", ap=None, max_iter=50)  # crashed: no eval line
    rows, infos = collect([atss, ciou], [0, 1, 2], tmp_path, max_iter=50)
    assert len(infos) == 5
    mean, std = rows[0].summary("AP")
    assert math.isclose(mean, 100 * statistics.fmean(aps.values()))
    assert math.isclose(std, 100 * statistics.stdev(aps.values()))
    assert rows[0].summary("APs") is None  # COCO's -1: no small objects
    assert sorted(rows[1].metrics) == [0] and rows[1].failed == [1]
    # An evaluation at another iteration (an older, shorter grid) does not count as this grid's result.
    assert collect([atss], [0], tmp_path, max_iter=60)[0][0].metrics == {}


def test_table_marks_missing_seeds_and_formats_percent():
    atss, ciou, fcos = find_variants(["atss", "atss_ciou", "tv_fcos"])
    rows = [
        Row(atss, [0, 1], metrics={0: _metrics(0.30), 1: _metrics(0.32)}, wall_s={0: 60.0, 1: 180.0}),
        Row(ciou, [0, 1], metrics={1: _metrics(0.41)}),
        Row(fcos, [0, 1]),
    ]
    lines = render_table(rows).splitlines()
    assert lines[0].split("|")[3:9] == [f" {c} " for c in COLUMNS]
    atss_cells = [cell.strip() for cell in lines[2].split("|")]
    assert atss_cells[2] == "2/2"
    assert atss_cells[3] == f"{31.0:.1f} ± {100 * statistics.stdev([0.30, 0.32]):.1f}"
    assert atss_cells[6] == "-" and atss_cells[-2] == "2.0"  # APs -1 -> "-"; mean of 1 and 3 minutes
    ciou_cells = [cell.strip() for cell in lines[3].split("|")]
    assert ciou_cells[2] == "1/2 (missing seed 0)" and ciou_cells[3] == "41.0"
    fcos_cells = [cell.strip() for cell in lines[4].split("|")]
    assert fcos_cells[2] == "0/2 (missing seed 0, 1)" and set(fcos_cells[3:-1]) == {"-"}


def test_document_has_a_section_per_dataset_with_tables_figures_commands_and_machine(tmp_path):
    results = tmp_path / "docs" / "results" / "runs"
    for dataset, names in (("bccd", ("atss", "atss_ciou")), ("aquarium", ("ciou_qfl_iou",))):
        for name in names:
            for seed in (0, 1):
                _fake_run(results / dataset / name / f"seed{seed}", ap=0.3 + seed / 10, max_iter=20)
        grid = {"seeds": [0, 1], "max_iter": 20, "invocations": [f"python experiments/ablation.py --dataset {dataset}"],
                "setup": {"data": f"../shared/data/{dataset}"}}
        (results / dataset / results_doc.GRID_FILE).write_text(json.dumps(grid))
    (results / "aquarium" / "tv_fcos" / "seed0").mkdir(parents=True)  # started, never finished
    doc = write_results(results, tmp_path / "docs" / "results.md")
    text = doc.read_text()
    assert text.index("## bccd") < text.index("## aquarium")
    assert text.splitlines()[0].endswith("on small real datasets (bccd, aquarium)")  # the datasets it holds
    for figure in ("loss_box.png", "mean_piou.png"):
        assert (tmp_path / "docs" / "results" / "bccd" / figure).stat().st_size > 1000
        assert f"(results/bccd/{figure})" in text
        assert not (tmp_path / "docs" / "results" / "aquarium" / figure).exists()  # one Fig. 2 row: nothing to compare
    assert "| ATSS+CIoU | 2/2 |" in text and "| CIoU+QFL+IoU branch (Dynamic ATSS) | 2/2 |" in text
    assert "--dataset bccd" in text and "--dataset aquarium" in text and "python -m dynatss train x.yaml" in text
    assert "cores: 2" in text and "6 runs, 0.2 h of run wall time" in text


def test_grid_archives_finished_runs_and_skips_them_next_time(tmp_path, monkeypatch):
    """A finished run is copied to the committed tree at once; a second invocation runs nothing."""
    from experiments import ablation

    calls = []

    def fake_execute(command, run_dir, *, threads):
        calls.append(run_dir)
        _fake_run(run_dir, ap=0.5, max_iter=20)
        return json.loads((run_dir / "run.json").read_text())

    monkeypatch.setattr(ablation, "execute", fake_execute)
    variants = find_variants(["atss", "tv_fcos"])
    kwargs = dict(base_config=BASE_CONFIG, dataset=[], extra=[], jobs=1, threads=1, max_iter=20)
    infos = run_grid(variants, [0, 1], tmp_path / "scratch", tmp_path / "archive", **kwargs)
    assert len(infos) == 4 and len(calls) == 4
    for name in ("atss", "tv_fcos"):
        for seed in (0, 1):
            archived = tmp_path / "archive" / name / f"seed{seed}"
            assert sorted(p.name for p in archived.iterdir()) == ["metrics.jsonl", "run.json"]
    assert run_grid(variants, [0, 1], tmp_path / "other_scratch", tmp_path / "archive", **kwargs) == []
    assert len(calls) == 4


def test_grid_sets_aside_a_run_killed_before_its_first_checkpoint(tmp_path, monkeypatch):
    """--resume refuses a run with no checkpoint; the grid moves it aside (nothing deleted) and starts anew,
    and leaves a run with a checkpoint where it is."""
    from dynatss.engine.checkpoint import save_checkpoint
    from experiments import ablation

    scratch = tmp_path / "scratch"
    _fake_run(scratch / "atss" / "seed0", ap=None, max_iter=20)  # train lines, no checkpoint
    _fake_run(scratch / "atss" / "seed1", ap=None, max_iter=20)
    save_checkpoint({"model": {}, "iter": 10}, scratch / "atss" / "seed1" / "checkpoints" / "last.pth")
    started_in = {}

    def fake_execute(command, run_dir, *, threads):
        started_in[run_dir.name] = sorted(p.name for p in run_dir.iterdir()) if run_dir.exists() else []
        return {"returncode": 0, "wall_s": 1.0}

    monkeypatch.setattr(ablation, "execute", fake_execute)
    kwargs = dict(base_config=BASE_CONFIG, dataset=[], extra=[], jobs=1, threads=1, max_iter=20)
    run_grid(find_variants(["atss"]), [0, 1], scratch, tmp_path / "archive", **kwargs)
    assert started_in == {"seed0": [], "seed1": ["checkpoints", "config.yaml", "metrics.jsonl", "run.json"]}
    aside = scratch / "atss" / "seed0.unresumable-1"
    assert sorted(p.name for p in aside.iterdir()) == ["config.yaml", "metrics.jsonl", "run.json"]
    assert set_aside_unresumable(scratch / "atss" / "seed1") is None  # a checkpoint to resume from
    assert set_aside_unresumable(tmp_path / "absent") is None
    _fake_run(tmp_path / "training", ap=None, max_iter=20)
    with RunDirLock(tmp_path / "training"), pytest.raises(DynatssError, match="in use by another training process"):
        set_aside_unresumable(tmp_path / "training")  # a process is still training there
    assert (tmp_path / "training" / "metrics.jsonl").is_file()


def test_readme_table_has_a_row_per_dataset_and_finished_variant(tmp_path):
    from experiments.readme_table import render

    results = tmp_path / "runs"
    for seed, ap in enumerate((0.30, 0.34)):
        _fake_run(results / "aquarium" / "atss" / f"seed{seed}", ap=ap, max_iter=20)
    _fake_run(results / "bccd" / "tv_fcos" / "seed0", ap=0.5, max_iter=20)
    _fake_run(results / "bccd" / "atss" / "seed0", ap=None, max_iter=20)  # failed: no row
    for dataset in ("aquarium", "bccd"):
        (results / dataset / "grid.json").write_text(json.dumps({"max_iter": 20}))
    lines = render(results).splitlines()
    assert lines[2] == "| bccd | torchvision FCOS | 1 | 50.0 | 70.0 | 2.0 |"
    assert lines[3] == f"| aquarium | ATSS (AIoUs, focal, centerness) | 2 | 32.0 ± {100 * statistics.stdev([0.3, 0.34]):.1f} | " \
                       f"52.0 ± {100 * statistics.stdev([0.5, 0.54]):.1f} | 2.0 |"
    assert len(lines) == 4


def test_paired_difference_against_atss_by_hand():
    atss, full, fcos, gfl, gfl_ciou = find_variants(["atss", "ciou_qfl_iou", "tv_fcos", "gflv2", "gflv2_ciou"])
    baseline = Row(atss, [0, 1, 2], metrics={0: _metrics(0.50), 1: _metrics(0.52), 2: _metrics(0.55)})
    # Differences 0.00, +0.02, +0.01 on the shared seeds; seed 3 has no ATSS run and is left out.
    row = Row(full, [0, 1, 2, 3], metrics={0: _metrics(0.50), 1: _metrics(0.54), 2: _metrics(0.56),
                                           3: _metrics(0.90)})
    mean, half_width, count, ahead = paired_difference(row, baseline, "AP")
    assert count == 3 and ahead == 2
    assert math.isclose(mean, 1.0)
    assert math.isclose(half_width, 4.303 * 1.0 / math.sqrt(3))  # sample std of (0, 2, 1) is 1
    assert paired_difference(Row(full, [0], metrics={0: _metrics(0.6)}), baseline, "AP") is None
    gfl_row = Row(gfl, [0, 1], metrics={0: _metrics(0.40), 1: _metrics(0.44)})
    gfl_ciou_row = Row(gfl_ciou, [0, 1], metrics={0: _metrics(0.41), 1: _metrics(0.46)})
    table = render_paired([baseline, row, Row(fcos, [0, 1, 2], metrics=baseline.metrics), gfl_row, gfl_ciou_row])
    lines = [line.split("|") for line in table.splitlines()]
    assert len(lines) == 5  # header, rule, ours, GFLV2 against ATSS, GFLV2+CIoU against GFLV2: no peer
    assert lines[2][2].strip() == "`atss`" and lines[2][3].strip() == "3"
    assert lines[2][4].strip() == f"+1.0 ({1 - 4.303 / math.sqrt(3):+.1f}, {1 + 4.303 / math.sqrt(3):+.1f})"
    assert lines[2][-2].strip() == "2/3"
    assert lines[4][1].strip() == gfl_ciou.label and lines[4][2].strip() == "`gflv2`"
    assert lines[4][4].strip().startswith("+1.5 (")  # differences +1 and +2 on seeds 0 and 1


def test_paired_table_adds_the_extra_baselines_that_were_run():
    atss, full, uniform, atss_uniform = find_variants(["atss", "ciou_qfl_iou", "ciou_qfl_iou_uniform", "atss_uniform"])
    seeds = [0, 1]
    rows = [Row(atss, seeds, metrics={0: _metrics(0.50), 1: _metrics(0.52)}),
            Row(full, seeds, metrics={0: _metrics(0.51), 1: _metrics(0.52)}),
            Row(uniform, seeds, metrics={0: _metrics(0.53), 1: _metrics(0.56)})]
    lines = [line.split("|") for line in render_paired(rows).splitlines()]
    # The full method against ATSS; uniform weights against ATSS and the paper's full method (ATSS
    # with uniform weights was not run: no line for it).
    assert [(line[1].strip(), line[2].strip()) for line in lines[2:]] == [
        (full.label, "`atss`"), (uniform.label, "`atss`"), (uniform.label, "`ciou_qfl_iou`")]
    assert lines[4][4].strip().startswith("+3.0 (")  # differences +2 and +4 against the paper's
    rows.append(Row(atss_uniform, seeds, metrics={0: _metrics(0.52), 1: _metrics(0.55)}))
    lines = [line.split("|") for line in render_paired(rows).splitlines()]
    assert (lines[5][1].strip(), lines[5][2].strip()) == (uniform.label, "`atss_uniform`")
    assert lines[5][4].strip().startswith("+1.0 (")  # differences +1 and +1
    assert (lines[6][1].strip(), lines[6][2].strip()) == (atss_uniform.label, "`atss`")


def test_table_v_heads_with_uniform_weights_pair_with_the_same_head():
    """Uniform box weights against the official ones under ATSS assignment; combined IoUs against
    ATSS assignment under uniform weights, and against combined IoUs under the official weights."""
    names = ["gflv2", "gflv2_ciou", "gflv2_uniform", "gflv2_ciou_uniform"]
    gfl, gfl_ciou, gfl_uniform, gfl_ciou_uniform = find_variants(names)
    aps = {"gflv2": (0.40, 0.44), "gflv2_ciou": (0.41, 0.44), "gflv2_uniform": (0.42, 0.45),
           "gflv2_ciou_uniform": (0.44, 0.49)}
    rows = [Row(variant, [0, 1], metrics={seed: _metrics(aps[variant.name][seed]) for seed in (0, 1)})
            for variant in (gfl, gfl_ciou, gfl_uniform, gfl_ciou_uniform)]
    lines = [line.split("|") for line in render_paired(rows).splitlines()]
    assert [(line[1].strip(), line[2].strip(), line[4].strip()[:4]) for line in lines[2:]] == [
        (gfl_ciou.label, "`gflv2`", "+0.5"), (gfl_uniform.label, "`gflv2`", "+1.5"),
        (gfl_ciou_uniform.label, "`gflv2_uniform`", "+3.0"), (gfl_ciou_uniform.label, "`gflv2_ciou`", "+4.0")]


def test_table_v_heads_with_the_recipes_cap_pair_with_atss_assignment_and_without_the_cap():
    names = ["gflv2_uniform", "gflv2_ciou_uniform", "gflv2_ciou_uniform_cap50"]
    aps = {"gflv2_uniform": (0.42, 0.45), "gflv2_ciou_uniform": (0.41, 0.44), "gflv2_ciou_uniform_cap50": (0.44, 0.46)}
    rows = [Row(variant, [0, 1], metrics={seed: _metrics(aps[variant.name][seed]) for seed in (0, 1)})
            for variant in find_variants(names)]
    lines = [line.split("|") for line in render_paired(rows).splitlines()]
    capped = [(line[2].strip(), line[4].strip()[:4]) for line in lines[2:] if "50 %" in line[1]]
    assert capped == [("`gflv2_uniform`", "+1.5"), ("`gflv2_ciou_uniform`", "+2.5")]


@pytest.mark.parametrize("head", ["gflv2", "vfnet"])
def test_the_gated_table_v_rows_change_only_the_levels_and_pair_with_the_head_and_the_ungated_row(head):
    """<head>_ciou_uniform_cap50_lvl is <head>_ciou_uniform_cap50 with assign.levels=anchor, compared
    with the head under ATSS assignment (the bar) and with the same row without the gate."""
    baseline, ungated_name, gated_name = f"{head}_uniform", f"{head}_ciou_uniform_cap50", f"{head}_ciou_uniform_cap50_lvl"
    gated, ungated = find_variants([gated_name, ungated_name])
    gated_cfg = load_config(BASE_CONFIG, variant_overrides(gated))
    ungated_cfg = load_config(BASE_CONFIG, variant_overrides(ungated))
    assert (gated_cfg.assign.levels, ungated_cfg.assign.levels) == ("anchor", "all")
    assert replace(gated_cfg, assign=replace(gated_cfg.assign, levels="all")) == ungated_cfg
    aps = {baseline: (0.42, 0.45), ungated_name: (0.41, 0.44), gated_name: (0.44, 0.46)}
    rows = [Row(variant, [0, 1], metrics={seed: _metrics(aps[variant.name][seed]) for seed in (0, 1)})
            for variant in find_variants(list(aps))]
    lines = [line.split("|") for line in render_paired(rows).splitlines()]
    compared = [(line[2].strip(), line[4].strip()[:4]) for line in lines[2:] if "levels from anchors" in line[1]]
    assert compared == [(f"`{baseline}`", "+1.5"), (f"`{ungated_name}`", "+2.5")]


def test_the_recipe_row_is_the_recipe():
    """The results' "the recipe" row (results_checks.FULL) changes nothing in the recipe's config, and
    the previous recipe's row differs from it only in the cap on positives."""
    (full,) = find_variants([FULL])
    assert "the recipe)" in full.label
    recipe = load_config(BASE_CONFIG, [])
    assert load_config(BASE_CONFIG, variant_overrides(full)) == recipe
    assert (recipe.assign.max_positives, recipe.assign.max_positives_from) == ("atss", 0.5)
    previous = load_config(BASE_CONFIG, variant_overrides(find_variants(["ciou_qfl_iou_uniform"])[0]))
    assert previous.assign.max_positives == "threshold" and previous.model == recipe.model
    assert previous.loss == recipe.loss


def test_the_head_commands_in_heads_md_train_the_measured_rows():
    """docs/heads.md's recipe commands for GFLV2 and VFNet give the configs of the rows it quotes."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "heads.md").read_text()
    commands = [line.split() for line in doc.splitlines()
                if line.strip().startswith("dynatss train configs/recipes/small_data_cpu.yaml model.head=")]
    settings = {next(word for word in words if word.startswith("model.head=")): [
        word for word in words[3:] if not word.startswith("data.")] for words in commands}
    assert sorted(settings) == ["model.head=gfl", "model.head=vfnet"]
    for head, row in (("model.head=gfl", "gflv2_ciou_uniform_cap50"), ("model.head=vfnet", "vfnet_ciou_uniform_cap50_lvl")):
        assert load_config(BASE_CONFIG, settings[head]) == load_config(
            BASE_CONFIG, variant_overrides(find_variants([row])[0])), head
