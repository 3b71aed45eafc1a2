"""benchmarks/gpu_check.py: ``--smoke`` runs every section end to end on the CPU with a bundle made as
for the GPU machine (benchmarks/gpu_bundle.py, without the wheels: no network here), and its report
has every section with sane values. What breaks the GPU run (a moved module, a changed signature)
breaks this test first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_bundle import MANIFEST, MAX_BUNDLE_MIB, bccd_dir, prepare, torch_home
from benchmarks.gpu_check import JSON_FILE, MARKDOWN_FILE, SECTIONS
from benchmarks.gpu_plan import BASELINE, FULL, MODELS, SMOKE, Check, Section
from benchmarks.gpu_report import render_markdown
from benchmarks.gpu_sections import (
    accuracy_overrides,
    command_line,
    cuda_only_tests,
    inference_flags,
    training_args,
)
from benchmarks.inference import benchmark_config
from benchmarks.inference import parse_args as inference_args
from benchmarks.train_step import model_config
from dynatss.config import load_config, validate_config
from dynatss.engine.lr_schedule import schedule_in_epochs
from experiments.ablation import BASE_CONFIG, variant_overrides
from experiments.variants import find_variants

ROOT = Path(__file__).resolve().parents[2]
BCCD = ROOT.parent / "shared" / "data" / "bccd"
needs_bccd = pytest.mark.skipif(not BCCD.is_dir(), reason="BCCD not found at ../shared/data/bccd")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, Path, Path]:
    """(the JSON report, the output folder, the bundle) of one ``--smoke`` run."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    bundle, out = tmp / "bundle", tmp / "out"
    prepare(bundle, BCCD, wheels=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--bundle", str(bundle),
                    "--out", str(out)], cwd=tmp, env=env, check=True, timeout=600)
    return json.loads((out / JSON_FILE).read_text()), out, bundle


@needs_bccd
@pytest.mark.slow
def test_every_section_ran_to_the_end(smoke):
    report, _, _ = smoke
    assert list(report["sections"]) == list(SECTIONS)
    for name, section in report["sections"].items():
        assert section["cut"] == [] and section["errors"] == [], name
        assert section["status"] == ("ok" if name != "cuda_tests" else
                                     "skipped: no CUDA (the tests ran and skipped themselves)"), name
    assert report["meta"]["smoke"] is True and report["meta"]["commit"] != ""


@needs_bccd
@pytest.mark.slow
def test_the_cuda_tests_ran_and_skipped(smoke):
    rows = smoke[0]["sections"]["cuda_tests"]["rows"]
    assert {row["test"].rsplit("::", 1)[1] for row in rows} == {name for _, name in cuda_only_tests(ROOT / "tests")}
    assert all(row["outcome"] == "skipped" for row in rows)


@needs_bccd
@pytest.mark.slow
def test_training_rows_of_every_model_and_the_loader(smoke):
    section = smoke[0]["sections"]["training"]
    steps = [row for row in section["rows"] if row["kind"] == "step"]
    assert {(row["setting"], row["model"]) for row in steps} == {(s, m) for s in ("coco", "small_data") for m in MODELS}
    for row in steps:
        assert row["images_per_s"] > 0 and row["ms_per_step"] > 0 and row["amp"] == "none"
        assert 0 < row["criterion_share"] < 1 and row[f"vs_{BASELINE}"] > 0
    loaders = [row for row in section["rows"] if row["kind"] == "loader"]
    assert {row["setting"] for row in loaders} == {"coco", "small_data"}
    assert all(row["images_per_s"] > 0 for row in loaders)
    assert section["skipped"] == ["coco bf16: no CUDA (autocast runs on CUDA only)"]


@needs_bccd
@pytest.mark.slow
def test_inference_rows_of_every_path_and_batch(smoke):
    rows = smoke[0]["sections"]["inference"]["rows"]
    batches = set(SMOKE.inference_batches)
    assert {(row["path"], row["batch"]) for row in rows} == {(p, b) for p in ("dynatss", "dynatss_onnx", "tv_fcos")
                                                           for b in batches}
    assert all(row["images_per_s"] > 0 and row[f"vs_{BASELINE}"] > 0 for row in rows)
    assert all(row["detections_per_image"] > 0 for row in rows)  # score threshold 0: NMS has work


@needs_bccd
@pytest.mark.slow
def test_assigner_rows_agree_with_the_baseline(smoke):
    rows = smoke[0]["sections"]["assigner"]["rows"]
    assert [row["gts"] for row in rows] == list(SMOKE.assign_gts)
    assert all(row["ours_ms"] > 0 and row["same_positives"] is True for row in rows)


@needs_bccd
@pytest.mark.slow
def test_accuracy_runs_trained_and_were_scored_per_class(smoke):
    report, out, _ = smoke
    rows = report["sections"]["accuracy"]["rows"]
    assert [(row["variant"], row["seed"], row["status"]) for row in rows] == [("atss", 0, "ok"), ("ciou_qfl_iou", 0, "ok")]
    for row in rows:
        assert 0 <= row["metrics"]["AP"] <= 1 and set(row["per_class"]) == {"Platelets", "RBC", "WBC"}
        assert row["images_per_s"] > 0
        assert (out / f"accuracy_{row['variant']}_seed0.jsonl").is_file()


@needs_bccd
@pytest.mark.slow
def test_markdown_is_the_json_rendered(smoke):
    report, out, _ = smoke
    text = (out / MARKDOWN_FILE).read_text()
    assert text == render_markdown(report)
    for heading in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5."):
        assert heading in text
    assert all(f"| {model} |" in text for model in MODELS)


@needs_bccd
@pytest.mark.slow
def test_a_gpu_report_renders_its_machine_and_memory(smoke):
    """The GPU-only fields (card, driver, flags, peak memory) have a place in the Markdown."""
    report = json.loads(json.dumps(smoke[0]))
    report["meta"].update(smoke=False, gpu="NVIDIA H100 80GB HBM3", gpu_memory_gib=79.2, cuda="13.0", cudnn=91000,
                          driver="580.159.04", cudnn_benchmark=False, tf32_matmul=False, tf32_cudnn=True)
    for row in report["sections"]["training"]["rows"]:
        row["peak_mb"] = 1234.0 if row["kind"] == "step" else None
    text = render_markdown(report)
    assert text.startswith("# GPU check: NVIDIA H100 80GB HBM3") and "driver 580.159.04" in text
    assert "| 1234 |" in text


@needs_bccd
@pytest.mark.slow
def test_the_bundle_holds_data_and_weights_within_the_carry_limit(smoke):
    _, _, bundle = smoke
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["mib"] < MAX_BUNDLE_MIB and manifest["wheels"] == []
    assert (bccd_dir(bundle) / "ImageSets" / "Main" / "train.txt").is_file()
    assert len(list((torch_home(bundle) / "hub" / "checkpoints").glob("mobilenet_v2-*.pth"))) == 1


def test_the_cuda_only_tests_are_found_by_their_skip_marker():
    found = {(path.relative_to(ROOT).as_posix(), name) for path, name in cuda_only_tests(ROOT / "tests")}
    assert {("tests/model/test_dcn.py", "test_cuda_matches_the_cpu_path"),
            ("tests/engine/test_logged_values.py", "test_one_sync_on_cuda"),
            ("tests/heads/test_star_dcn.py", "test_cuda_matches_cpu")} <= found


def test_a_part_that_does_not_fit_is_cut_and_a_failing_one_recorded():
    section = Section("demo", cap_s=60)
    assert section.run("quick", lambda: section.rows.append({"done": True}))
    assert not section.run("too long", lambda: None, estimate_s=3600)
    assert section.run("broken", lambda: 1 / 0)
    assert section.rows == [{"done": True}]
    assert [text.split(" (")[0] for text in section.cut] == ["too long"]
    assert section.errors == ["broken: ZeroDivisionError: division by zero"]
    assert set(section.parts_s) == {"quick", "broken"}


def test_overrides_go_after_the_options():
    assert command_line("--batch", "1", "8", "model.x=1", "--size", "8x8", "data.root=a") == [
        "--batch", "1", "8", "--size", "8x8", "--", "model.x=1", "data.root=a"]


def test_full_check_refuses_a_machine_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from benchmarks.gpu_check import main

    with pytest.raises(SystemExit, match="no CUDA device"):
        main(["--out", str(tmp_path), "--bundle", str(tmp_path / "none")])


@needs_bccd
def test_the_bundle_never_empties_a_folder_that_is_not_one(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not a bundle"):
        prepare(tmp_path, BCCD, wheels=False)
    assert (tmp_path / "keep.txt").read_text() == "mine"


@needs_bccd
def test_the_full_plan_builds_the_settings_the_issue_asks_for(tmp_path):
    """The GPU plan never runs in CI: its configs are built and checked here instead."""
    check = Check(FULL, torch.device("cpu"), (f"data.root={BCCD}",), tmp_path, tmp_path)
    settings = {setting.name: setting for setting in FULL.settings}
    for name, amp in FULL.groups:
        args = training_args(check, settings[name], amp)
        configs = {model: validate_config(model_config(model, args)) for model in settings[name].models}
        assert {cfg.solver.amp for cfg in configs.values()} == {amp}
        model = configs["dynamic_atss"].model
        if name.startswith("coco"):  # ResNet-50-FPN, the paper's FPN and head, 800x1333
            assert (model.backbone, model.fpn_channels, model.head_convs, model.head_channels) == ("resnet50", 256, 4, 256)
            assert model.num_classes == 80 and model.pretrained is None and args.size == "800x1333"
        else:  # the small-data recipe as it is
            assert (model.backbone, model.head_convs, configs["dynamic_atss"].data.min_sizes) == ("mobilenet_v2", 2, [320])
        assert configs["dynamic_atss"].solver.batch_size == (16 if name == "coco_batch16" else 8)
    inference = benchmark_config(inference_args(inference_flags(check)))
    assert (inference.model.backbone, inference.data.test_min_size, inference.data.max_size) == ("resnet50", 800, 1333)
    dataset, extra, max_iter = accuracy_overrides(check)
    for variant in find_variants(["atss", "ciou_qfl_iou"]):
        cfg = validate_config(load_config(BASE_CONFIG, [*dataset, *variant_overrides(variant), *extra]))
        assert (cfg.model.head_convs, cfg.model.head_channels, cfg.data.min_sizes, cfg.data.max_size) == (4, 256, [480], 640)
        # 24 epochs of BCCD's 205 training images at batch 8: 615 steps, rounded to 620; decay at 76 % and 94 %.
        assert (cfg.solver.epochs, cfg.solver.min_iter, cfg.solver.batch_size, cfg.model.pretrained) == (24, 0, 8, "imagenet")
        assert (max_iter, schedule_in_epochs(cfg.solver, 205)) == (620, (620, [471, 583]))
