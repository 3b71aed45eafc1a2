"""The Markdown of benchmarks/gpu_check.py, written from its JSON report alone (so it can be rebuilt).

    PYTHONPATH=. python benchmarks/gpu_report.py docs/results/gpu/<run>/gpu_check.json > gpu_check.md
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from benchmarks.common import markdown_table

BASELINE_KEY = "vs_tv_fcos"
ACCURACY_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm")


def fmt(value, digits: int = 1, suffix: str = "") -> str:
    """A number with ``digits`` decimals (``-`` for None); booleans and text as they are."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}f}{suffix}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def header(report: dict) -> list[str]:
    meta = report["meta"]
    where = f"{meta.get('gpu')} ({meta.get('gpu_memory_gib')} GiB), driver {meta.get('driver')}, CUDA " \
            f"{meta.get('cuda')}, cuDNN {meta.get('cudnn')}" if meta.get("gpu") else "CPU (smoke: tiny sizes, no CUDA)"
    lines = [
        f"# GPU check{' (smoke)' if meta['smoke'] else ''}: {meta.get('gpu') or 'CPU'}",
        "",
        f"{meta['date']}, commit {meta['commit']}; {where}; torch {meta['torch']}, torchvision "
        f"{meta['torchvision']}, onnxruntime {meta['onnxruntime']} ({', '.join(meta['onnxruntime_providers'])}), "
        f"Python {meta['python']}, {meta['cpu_cores']} CPU cores. Wall time {meta.get('wall_s')} s of a "
        f"{report['plan']['total_s']} s budget.",
    ]
    if meta.get("gpu"):
        lines += ["", f"cudnn.benchmark {meta['cudnn_benchmark']}, TF32 matmul {meta['tf32_matmul']}, "
                      f"TF32 cuDNN {meta['tf32_cudnn']} (PyTorch's defaults; the check changes none)."]
    rows = [[name, section["status"], fmt(section["seconds"], 0), fmt(section["cap_s"], 0),
             "; ".join(section["cut"]) or "-", "; ".join(section["skipped"]) or "-"]
            for name, section in report["sections"].items()]
    return [*lines, "", markdown_table(["section", "status", "s", "cap s", "cut by the cap", "skipped"], rows)]


def cuda_tests(section: dict) -> list[str]:
    rows = [[row["test"], row["outcome"], row["message"] or "-"] for row in section["rows"]]
    return [markdown_table(["test", "outcome", "message"], rows)]


def training(section: dict) -> list[str]:
    steps = [row for row in section["rows"] if row["kind"] == "step"]
    rows = [[row["setting"], row["amp"], row["model"], str(row["batch"]), fmt(row["images_per_s"]),
             fmt(row[BASELINE_KEY], 2, "x"), fmt(row["ms_per_step"], 0), fmt(row["criterion_ms"]),
             percent(row["criterion_share"]), fmt(row["peak_mb"], 0)] for row in steps]
    lines = [markdown_table(["setting", "amp", "model", "batch", "img/s", "vs tv_fcos", "ms/step", "criterion ms",
                             "criterion %", "peak MB"], rows)]
    loaders = []
    for row in (row for row in section["rows"] if row["kind"] == "loader"):
        fastest = max((step["images_per_s"] for step in steps if step["setting"] == row["setting"]), default=None)
        keeps_up = None if fastest is None else row["images_per_s"] >= fastest
        loaders.append([row["setting"], str(row["workers"]), str(row["batch"]), fmt(row["images_per_s"]),
                        fmt(fastest), fmt(keeps_up)])
    if loaders:
        lines += ["", "The training loader alone (decode, resize to the setting's input, flip, batch) beside the "
                      "fastest training step of the same setting:", "",
                  markdown_table(["setting", "workers", "batch", "loader img/s", "fastest step img/s", "keeps up"],
                                 loaders)]
    return lines


def inference(section: dict) -> list[str]:
    rows = [[row["path"], row["runtime"], row["amp"], str(row["batch"]), fmt(row["images_per_s"]),
             fmt(row[BASELINE_KEY], 2, "x"), fmt(row["ms_per_image"]), fmt(row["detections_per_image"])]
            for row in section["rows"]]
    return [markdown_table(["path", "runtime", "amp", "batch", "img/s", "vs tv_fcos", "ms/image", "detections/image"],
                           rows)]


def assigner(section: dict) -> list[str]:
    rows = []
    for row in section["rows"]:
        baseline = row.get("baseline_ms")
        rows.append([row["size"], str(row["batch"]), str(row["gts"]), str(row["anchors"]), fmt(row["ours_ms"], 2),
                     fmt(row["ours_peak_mb"], 0), fmt(baseline, 2), fmt(baseline / row["ours_ms"] if baseline else None,
                                                                       1, "x"), fmt(row.get("same_positives"))])
    return [markdown_table(["input", "batch", "GTs/image", "anchors", "ours ms", "ours peak MB", "baseline ms",
                            "speed-up", "same positives"], rows)]


def accuracy(section: dict) -> list[str]:
    classes = sorted({name for row in section["rows"] for name in (row["per_class"] or {})})
    columns = ["variant", "seed", "status", *ACCURACY_COLUMNS, *(f"AP {name}" for name in classes), "train img/s"]
    rows = [[row["variant"], str(row["seed"]), row["status"],
             *(percent((row["metrics"] or {}).get(key)) for key in ACCURACY_COLUMNS),
             *(percent((row["per_class"] or {}).get(name)) for name in classes), fmt(row["images_per_s"])]
            for row in section["rows"]]
    for variant in dict.fromkeys(row["variant"] for row in section["rows"]):
        done = [row for row in section["rows"] if row["variant"] == variant and row["metrics"]]
        if done:
            mean = [statistics.fmean(row["metrics"][key] for row in done) for key in ACCURACY_COLUMNS]
            per_class = [statistics.fmean(row["per_class"][name] for row in done) for name in classes]
            rows.append([variant, f"mean of {len(done)}", "", *map(percent, mean), *map(percent, per_class), ""])
    return [markdown_table(columns, rows)]


RENDERERS = {"cuda_tests": ("1. Tests that need CUDA", cuda_tests), "training": ("2. Training throughput", training),
             "inference": ("3. Inference", inference), "assigner": ("4. The assigner alone", assigner),
             "accuracy": ("5. Accuracy: BCCD at 480x640, the paper's head, 24 epochs (COCO AP, %)", accuracy)}


def render_markdown(report: dict) -> str:
    lines = header(report)
    for name, section in report["sections"].items():
        title, render = RENDERERS[name]
        lines += ["", f"## {title}", "", f"Status: {section['status']}.", ""]
        if section["rows"]:
            lines += render(section)
        for label, items in (("Cut by the time cap", section["cut"]), ("Skipped", section["skipped"]),
                             ("Notes", section["notes"])):
            if items:
                lines += ["", f"{label}:", "", *(f"- {item}" for item in items)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_markdown(json.loads(Path(sys.argv[1]).read_text())))
