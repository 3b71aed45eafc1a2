"""The GPU rows: one command that measures what dynatss claims for GPUs, into one JSON and one Markdown file.

The sections (benchmarks/gpu_sections.py), in the order they run:

1. ``cuda_tests``: the tests that skip without CUDA (found by that skip marker): passed / failed.
2. ``training``: images/s of a whole training step after a warm-up (benchmarks/train_step.py's
   runners): Dynamic ATSS, ATSS, GFLV2, VFNet, torchvision FCOS and RetinaNet on the same backbone,
   FPN, head, input and batch; fp32, bf16 and fp16; at the COCO setting (ResNet-50-FPN, 800x1333,
   batch 8, random weights) and the small-data recipe's (MobileNetV2-FPN, BCCD at 320 px, batch 8).
   Peak GPU memory, the share of the step in assignment + losses (between CUDA events), and the data
   loader alone beside it.
3. ``inference``: images/s at batch 1 and 8 at the COCO setting (benchmarks/inference.py's paths):
   eager fp32 and fp16, the ONNX export in onnxruntime, torchvision FCOS.
4. ``assigner``: the batched assigner alone (benchmarks/assign.py) at 100, 500 and 5,000 GTs per
   image: time and peak memory, beside the per-image baseline.
5. ``accuracy``: BCCD at its native 480x640 with the paper's head (4 convs x 256 channels), 24
   epochs, ATSS and Dynamic ATSS, seeds 0 and 1 (seed 0 of both first, two runs side by side),
   trained by ``python -m dynatss train``; COCO AP per class.

Each section has a time cap and the whole check a total (benchmarks/gpu_plan.py): work a cap leaves
out is recorded under ``cut``, never dropped silently, and each section does its most important work
first. A section that fails is recorded and the next one runs; the report is rewritten after every
section, so a check stopped from outside keeps what it finished. What needs CUDA (the AMP rows, the
tests themselves) is reported as skipped on a CPU, so ``--smoke`` (every section with tiny sizes on
the CPU, in under a minute) keeps the whole script exercised in CI.

    # on a GPU machine, from the repository root, with .gpu/ from benchmarks/gpu_bundle.py
    # (docs/benchmarks.md, "GPU check"):
    PYTHONPATH=. python3 benchmarks/gpu_check.py --bundle .gpu --out "$OUT"
    # anywhere:
    PYTHONPATH=. python benchmarks/gpu_check.py --smoke --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import gpu_sections  # noqa: E402
from benchmarks.gpu_bundle import bccd_dir, use_bundle  # noqa: E402
from benchmarks.gpu_plan import FULL, SMOKE, Check, Section, describe  # noqa: E402
from benchmarks.gpu_report import render_markdown  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JSON_FILE, MARKDOWN_FILE = "gpu_check.json", "gpu_check.md"
SECTIONS: dict[str, Callable[[Check, Section], None]] = {
    "cuda_tests": gpu_sections.cuda_tests,
    "training": gpu_sections.training,
    "inference": gpu_sections.inference,
    "assigner": gpu_sections.assigner,
    "accuracy": gpu_sections.accuracy,
}


def run_section(name: str, check: Check, cap_s: float) -> Section:
    section = Section(name, cap_s)
    print(f"[gpu_check] {name}: cap {cap_s:.0f} s", file=sys.stderr, flush=True)
    try:
        SECTIONS[name](check, section)
    except (Exception, SystemExit) as error:  # the check goes on to the next section; the failure is its result
        traceback.print_exc()
        section.status = f"failed: {describe(error)}"
    if section.errors and section.status == "ok":
        section.status = f"failed: {len(section.errors)} part(s): " + "; ".join(section.errors)
    section.seconds = round(time.perf_counter() - section.started, 1)
    gpu_sections.free_memory()
    return section


def machine(device: torch.device, manifest: dict, smoke: bool) -> dict:
    """Where and with what the check ran (the GPU, its driver, the versions, the bundle's commit)."""
    import onnxruntime
    import torchvision

    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "smoke": smoke, "device": str(device),
            "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "onnxruntime": onnxruntime.__version__, "onnxruntime_providers": onnxruntime.get_available_providers(),
            "cpu_cores": os.cpu_count(), "commit": manifest.get("commit", "unknown (no bundle manifest)")}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        meta.update(gpu=properties.name, gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), driver=nvidia_driver(),
                    cudnn_benchmark=torch.backends.cudnn.benchmark, tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    tf32_cudnn=torch.backends.cudnn.allow_tf32)
    return meta


def nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True)
    return result.stdout.strip() or None


def write_report(report: dict, out: Path) -> None:
    (out / JSON_FILE).write_text(json.dumps(report, indent=1) + "\n")
    (out / MARKDOWN_FILE).write_text(render_markdown(report))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True,
                        help=f"folder for {JSON_FILE}, {MARKDOWN_FILE} and the accuracy runs' metrics")
    parser.add_argument("--bundle", type=Path, default=ROOT / ".gpu", help="the folder of benchmarks/gpu_bundle.py")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, under a minute (CI)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset, e.g. to rerun one")
    parser.add_argument("--work", type=Path, help="scratch folder, kept (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"--sections: unknown {sorted(unknown)} (choose from {list(SECTIONS)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        return check_all(args, args.work)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:  # an ONNX file and checkpoints: 100s of MB
        return check_all(args, Path(work))


def check_all(args: argparse.Namespace, work: Path) -> int:
    """Every section of ``args.sections`` in order, the report rewritten after each."""
    started = time.perf_counter()
    manifest = use_bundle(args.bundle)  # before any section imports faster_coco_eval or loads weights
    # The test run and the training runs are subprocesses: they find the repository from any folder.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cpu" and not args.smoke:
        raise SystemExit("no CUDA device here: the full check is for a GPU machine; --smoke runs it small on the CPU")
    plan = SMOKE if args.smoke else FULL
    if args.smoke:
        torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    data = (f"data.root={bccd_dir(args.bundle).resolve()}",) if bccd_dir(args.bundle).is_dir() else ()
    check = Check(plan, device, data, work, args.out)
    report = {"meta": machine(device, manifest, args.smoke), "plan": {"caps_s": plan.caps, "total_s": plan.total_s},
              "sections": {}}
    for name in (name for name in SECTIONS if name in args.sections.split(",")):
        cap = min(plan.caps[name], plan.total_s - (time.perf_counter() - started))
        report["sections"][name] = asdict(run_section(name, check, cap))
        report["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
        write_report(report, args.out)  # after every section: a check stopped from outside keeps what it did
    print(f"[gpu_check] {args.out / JSON_FILE} and {MARKDOWN_FILE} in {report['meta']['wall_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
