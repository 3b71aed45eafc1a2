"""The five sections of benchmarks/gpu_check.py, one function each, in the order they run.

Each takes the :class:`~benchmarks.gpu_plan.Check` (plan, device, data, folders) and fills its
:class:`~benchmarks.gpu_plan.Section` (rows, what its cap cut, what the machine skipped). The imports
of each section sit at its top, so that a module moved by a refactor is fixed in one place, and so
that nothing needing the bundle (faster-coco-eval, the weights) is imported before gpu_check.py has
put the bundle to use.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from benchmarks.gpu_plan import BASELINE, Check, Section, Setting

ROOT = Path(__file__).resolve().parents[1]
CUDA_SKIP = re.compile(r"^\s*@pytest\.mark\.skipif\(\s*not torch\.cuda\.is_available\(\)")
TEST_DEF = re.compile(r"^\s*def (test\w*)\(")


def number(value: float | None) -> float | None:
    """``value``, or None for NaN (JSON has no NaN)."""
    return None if value is None or math.isnan(value) else value


def command_line(*items: str) -> list[str]:
    """Options, ``--``, then the ``key.sub=value`` overrides: the benchmarks' parsers take their
    overrides as trailing positionals (after ``--``, an option of several values stops)."""
    overrides = [item for item in items if "=" in item and not item.startswith("-")]
    return [item for item in items if item not in overrides] + ["--", *overrides]


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# 1. The tests that need CUDA


def cuda_only_tests(tests: Path) -> list[tuple[Path, str]]:
    """(file, test name) of every test function decorated with a skip when CUDA is not available."""
    found = []
    for path in sorted(tests.rglob("test_*.py")):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if CUDA_SKIP.match(line):
                name = next(match[1] for match in map(TEST_DEF.match, lines[index + 1:]) if match)
                found.append((path, name))
    return found


def cuda_tests(check: Check, section: Section) -> None:
    import xml.etree.ElementTree as ElementTree

    tests = cuda_only_tests(ROOT / "tests")
    if not tests:  # pytest given no file would run the whole suite
        raise RuntimeError(f"no test under {ROOT / 'tests'} skips without CUDA")
    junit = check.work / "cuda_tests.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
               *sorted({str(path.relative_to(ROOT)) for path, _ in tests}), "-k", " or ".join(name for _, name in tests)]
    result = subprocess.run(command, cwd=ROOT, timeout=max(section.time_left(), 1), capture_output=True, text=True)
    if not junit.is_file():
        raise RuntimeError(f"pytest wrote no report (exit {result.returncode}): {result.stdout[-300:]}{result.stderr[-300:]}")
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        section.rows.append({
            "test": f"{case.get('classname')}::{case.get('name')}",
            "outcome": {None: "passed", "failure": "failed", "error": "failed", "skipped": "skipped"}[
                None if outcome is None else outcome.tag],
            "message": "" if outcome is None else (outcome.get("message") or "").splitlines()[0][:200],
        })
    if not check.cuda:
        section.status = "skipped: no CUDA (the tests ran and skipped themselves)"
    elif any(row["outcome"] != "passed" for row in section.rows):
        section.status = "failed: " + ", ".join(row["test"] for row in section.rows if row["outcome"] != "passed")


# --------------------------------------------------------------------------------------------
# 2. Training throughput


def training(check: Check, section: Section) -> None:
    settings = {setting.name: setting for setting in check.plan.settings}
    for setting_name, amp in check.plan.groups:
        what = f"{setting_name} {amp}"
        if amp != "none" and not check.cuda:
            section.skipped.append(f"{what}: no CUDA (autocast runs on CUDA only)")
            continue
        # Estimated at the last group of the same setting (or the longest group so far).
        same = [seconds for part, seconds in section.parts_s.items() if part.startswith(f"{setting_name} ")]
        section.run(what, partial(training_group, check, section, settings[setting_name], amp),
                    same[-1] if same else None)


def training_args(check: Check, setting: Setting, amp: str) -> argparse.Namespace:
    """benchmarks/train_step.py's command line for ``setting`` at ``amp``."""
    from benchmarks.train_step import parse_args

    return parse_args(command_line(
        *setting.flags, "--device", check.device.type, "--amp", amp, "--models", ",".join(setting.models),
        "--warmup", str(check.plan.warmup), "--rounds", str(check.plan.rounds), "--steps", str(check.plan.steps),
        *check.data_overrides))


def training_group(check: Check, section: Section, setting: Setting, amp: str) -> None:
    """Every model of ``setting`` at ``amp``, alternating within rounds (train_step.py's run_rounds);
    the loader alone the first time the setting is met."""
    from benchmarks import train_step

    args = training_args(check, setting, amp)
    batch = train_step.model_config(setting.models[0], args).solver.batch_size
    runners = [train_step.build_runner(name, args, check.device) for name in setting.models]
    peaks = train_step.run_rounds(runners, args, check.device)
    rows = [training_row(setting, amp, batch, runner, peaks.get(runner.name)) for runner in runners]
    del runners  # the next group's models need the memory
    free_memory()
    baseline = next((row["images_per_s"] for row in rows if row["model"] == BASELINE), None)
    section.rows += [{**row, f"vs_{BASELINE}": row["images_per_s"] / baseline if baseline else None} for row in rows]
    if not any(row["kind"] == "loader" and row["setting"] == setting.name for row in section.rows):
        section.rows += loader_rows(check, setting, args, batch)


def training_row(setting: Setting, amp: str, batch: int, runner, peak_mb: float | None) -> dict:
    step_s, criterion_s = runner.step_times.median("wall"), runner.criterion_times.median("wall")
    return {"kind": "step", "setting": setting.name, "amp": amp, "model": runner.name, "batch": batch,
            "images_per_s": batch / step_s, "ms_per_step": 1000 * step_s, "criterion_ms": 1000 * criterion_s,
            "criterion_share": number(criterion_s / step_s), "peak_mb": peak_mb}


def loader_rows(check: Check, setting: Setting, args: argparse.Namespace, batch: int) -> list[dict]:
    """The training loader alone (benchmarks/data.py), resizing to the setting's input: shorter side
    H, longer side at most W (BCCD's 640x480 become 800x1067 for 800x1333)."""
    from benchmarks.common import parse_size
    from benchmarks.data import time_ours
    from benchmarks.train_step import model_config, read_split

    data = model_config(setting.models[0], args).data
    size = parse_size(args.size)
    if size:
        data = replace(data, min_sizes=[size[0]], max_size=size[1])
    records = read_split(data.format, str(data.root), data.train_split).records
    return [{"kind": "loader", "setting": setting.name, "workers": workers, "batch": batch,
             "images_per_s": time_ours(records, replace(data, num_workers=workers), batch, check.plan.loader_batches)}
            for workers in check.plan.loader_workers]


# --------------------------------------------------------------------------------------------
# 3. Inference


def inference(check: Check, section: Section) -> None:
    """Eager fp32 and fp16, the ONNX export and torchvision FCOS at the COCO setting, batch 1 and 8;
    score threshold 0, so every top-k candidate goes to NMS (random heads pass no real threshold)."""
    from benchmarks import inference as bench

    plan, device = check.plan, check.device
    flags = inference_flags(check)
    configs = {amp: bench.benchmark_config(bench.parse_args(["--amp", amp, *flags])) for amp in ("none", "fp16")}
    images = bench.load_images(configs["none"], plan.inference_images)
    model, meta = bench.ours(configs["none"], None, device)
    peer = bench.peer(configs["none"], None, device)
    provider = onnx_provider(device)
    onnx_batches, onnx_images = plan.inference_batches, images
    if check.cuda and provider != "CUDA":
        section.notes.append("onnxruntime has no CUDA provider here (the 'onnxruntime' wheel is CPU-only and "
                             "onnxruntime-gpu is too large to carry): the ONNX row ran on its CPU provider, batch 1")
        onnx_batches, onnx_images = (1,), images[:4]

    def torch_paths(amp: str) -> list[tuple[str, Callable]]:
        return [(bench.OURS, bench.eager_detect(model, configs[amp], device)),
                (bench.PEER, bench.peer_detect(peer, configs[amp], device))]

    def onnx_paths() -> list[tuple[str, Callable]]:  # the export is part of the timed-out-able work
        path = check.work / "model.onnx"
        return [(bench.ONNX, bench.onnx_detect(model, configs["none"], meta, torch.get_num_threads(), path, device))]

    groups = [("none", "torch", partial(torch_paths, "none"), plan.inference_batches, images),
              ("fp16", "torch", partial(torch_paths, "fp16"), plan.inference_batches, images),
              ("none", f"onnxruntime {provider}", onnx_paths, onnx_batches, onnx_images)]
    for amp, runtime, paths, batches, group_images in groups:  # most important first
        if amp == "fp16" and not check.cuda:
            section.skipped.append("fp16: no CUDA (autocast runs on CUDA only)")
            continue
        section.run(f"{amp} {runtime}", partial(inference_group, section, bench.parse_args(flags), amp, runtime, paths,
                                                batches, group_images))
    for row in section.rows:
        peer_row = next((r for r in section.rows if r["path"] == bench.PEER and (r["batch"], r["amp"]) ==
                         (row["batch"], row["amp"])), None)
        row[f"vs_{BASELINE}"] = row["images_per_s"] / peer_row["images_per_s"] if peer_row else None


def inference_flags(check: Check) -> list[str]:
    """benchmarks/inference.py's command line (but ``--amp``)."""
    plan = check.plan
    return command_line(*plan.inference_flags, "--device", check.device.type, "--rounds", "2", "--score-threshold",
                        "0", "--images", str(plan.inference_images), "--batch", *map(str, plan.inference_batches),
                        *check.data_overrides)


def inference_group(section: Section, args: argparse.Namespace, amp: str, runtime: str,
                    paths: Callable[[], list[tuple[str, Callable]]], batches: tuple[int, ...], images: list) -> None:
    """benchmarks/inference.py's rounds over every (path, batch) of one group: rows into ``section``."""
    from benchmarks.inference import Row, run_rounds

    rows = [Row(name, batch, run) for name, run in paths() for batch in batches]
    run_rounds(rows, images, args, torch.device(args.device))
    section.rows += [inference_row(row, amp, runtime) for row in rows]


def inference_row(row, amp: str, runtime: str) -> dict:
    seconds = row.timings.median("wall")
    return {"path": row.name, "amp": amp, "runtime": runtime, "batch": row.batch, "images_per_s": row.batch / seconds,
            "ms_per_image": 1000 * seconds / row.batch, "detections_per_image": row.detections / row.images}


def onnx_provider(device: torch.device) -> str:
    """What dynatss.api.backends.OnnxBackend runs on for ``device``: CUDA when installed, else CPU."""
    import onnxruntime

    cuda = device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return "CUDA" if cuda else "CPU"


# --------------------------------------------------------------------------------------------
# 4. The assigner alone


def assigner(check: Check, section: Section) -> None:
    """benchmarks/assign.py's rows (ours and the per-image baseline, same positives checked)."""
    for batch in check.plan.assign_batches:
        for gts in check.plan.assign_gts:
            section.run(f"batch {batch} x {gts} GTs", partial(assigner_row, check, section, batch, gts))


def assigner_row(check: Check, section: Section, batch: int, gts: int) -> None:
    from benchmarks.assign import run_one

    height, width = check.plan.assign_size
    # As benchmarks/assign.py: the dense baseline is left out at batch > 2 x 5,000 GTs.
    row = run_one(height, width, batch, gts, check.device.type, not (gts >= 5000 and batch > 2),
                  check.plan.assign_budget_s)
    if not check.cuda:  # in-process resident memory says nothing (assign.py measures it per process)
        row["ours_peak_mb"] = None
    section.rows.append(row)


# --------------------------------------------------------------------------------------------
# 5. Accuracy on BCCD


def accuracy(check: Check, section: Section) -> None:
    """ATSS and Dynamic ATSS (configs/ablations/atss.yaml, ciou_qfl_iou.yaml) on the small-data
    recipe with the paper's head at BCCD's native size, as experiments/ablation.py runs them."""
    from experiments.ablation import BASE_CONFIG, run_command
    from experiments.variants import find_variants

    dataset, extra, max_iter = accuracy_overrides(check)
    section.notes.append(f"overrides of {BASE_CONFIG.relative_to(ROOT)} + configs/experiments/bccd.yaml + the "
                         f"variant's: {' '.join(extra)}")
    variants = find_variants(["atss", "ciou_qfl_iou"])
    for seed in check.plan.seeds:  # seed 0 of both methods first: a cut loses a second seed, never a method
        runs = {variant.name: check.work / "accuracy" / variant.name / f"seed{seed}" for variant in variants}
        commands = {variant.name: run_command(variant, base_config=BASE_CONFIG, seed=seed, run_dir=runs[variant.name],
                                              extra=extra, dataset=dataset) for variant in variants}
        section.run(f"seed {seed}", partial(accuracy_seed, check, section, seed, commands, runs, max_iter))


def accuracy_seed(check: Check, section: Section, seed: int, commands: dict[str, list[str]], runs: dict[str, Path],
                  max_iter: int) -> None:
    """One seed of every variant, side by side (the small network leaves the GPU idle between kernels)."""
    codes = run_side_by_side(commands, runs, check.plan.run_threads, section.time_left())
    section.rows += [accuracy_row(name, seed, runs[name], max_iter, codes[name], check.out) for name in runs]


def accuracy_overrides(check: Check) -> tuple[list[str], list[str], int]:
    """(the dataset's overrides, the run's, max_iter): the plan's epochs of the training split at the
    recipe's batch with the recipe's lr steps (solver.epochs, resolved by `train` as here), or the
    smoke's few steps without decay; one evaluation at the end."""
    from dynatss.config import load_config
    from dynatss.data.datasets import read_dataset
    from dynatss.engine.lr_schedule import schedule_in_epochs
    from experiments.ablation import BASE_CONFIG, dataset_overrides

    plan = check.plan
    dataset = [*dataset_overrides("bccd"), *check.data_overrides]
    if plan.accuracy_epochs:
        schedule = [f"solver.epochs={plan.accuracy_epochs}", "solver.min_iter=0"]
        cfg = load_config(BASE_CONFIG, [*dataset, *schedule])
        images = len(read_dataset(cfg.data.format, cfg.data.root, cfg.data.train_split).records)
        max_iter, _ = schedule_in_epochs(cfg.solver, images)
    else:
        max_iter = plan.accuracy_iters
        schedule = ["solver.epochs=null", f"solver.max_iter={max_iter}", "solver.steps=[]"]
    extra = [*plan.accuracy_overrides, *schedule, f"train.eval_period={max_iter}",
             f"train.checkpoint_period={max_iter}", f"train.device={check.device.type}"]
    return dataset, extra, max_iter


def run_side_by_side(commands: dict[str, list[str]], runs: dict[str, Path], threads: int, timeout_s: float) -> dict:
    """Start every command at once (its log in its run dir), wait up to ``timeout_s``, kill what is
    left. Returns name -> exit code (None: killed at the deadline)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    processes = {}
    for name, command in commands.items():
        runs[name].mkdir(parents=True, exist_ok=True)
        with open(runs[name] / "log.txt", "w") as log:
            processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.perf_counter() + timeout_s
    codes = {}
    for name, process in processes.items():
        try:
            codes[name] = process.wait(timeout=max(deadline - time.perf_counter(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            codes[name] = None
    return codes


def accuracy_row(variant: str, seed: int, run_dir: Path, max_iter: int, code: int | None, out: Path) -> dict:
    """The run's final COCO metrics and per-class AP, its training img/s; its metrics.jsonl copied to ``out``."""
    from experiments.results_doc import final_eval

    row = {"variant": variant, "seed": seed, "status": "ok", "metrics": None, "per_class": None, "images_per_s": None}
    final = final_eval(run_dir, max_iter)
    if code is None or final is None:
        row["status"] = "cut: killed at the section's deadline" if code is None else f"failed: exit {code}"
        row["log_tail"] = (run_dir / "log.txt").read_text().strip().splitlines()[-3:]
        return row
    lines = [json.loads(text) for text in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [line["images_per_s"] for line in lines if line.get("type") == "train"]
    rates = rates[1:] or rates  # after the first log window (start-up), unless there is only one
    row.update(metrics=final["metrics"], per_class=final["per_class"], images_per_s=statistics.fmean(rates))
    shutil.copyfile(run_dir / "metrics.jsonl", out / f"accuracy_{variant}_seed{seed}.jsonl")
    return row
