"""What benchmarks/gpu_check.py measures and for how long: the two plans (FULL on a GPU, SMOKE on a
CPU), and the time-cap bookkeeping every section shares.

FULL must finish well inside the device tool's 10-minute command limit (the session has 15 minutes
of device time, machine start included): ``total_s`` = 400 s. The caps below are upper bounds; the
estimates behind them (nothing has run on a GPU yet, so they are estimates, to be replaced by the
``parts_s`` seconds of the first report):

- cuda_tests: one pytest process, 3 tests: ~20 s.
- training: per COCO group (6 models, ResNet-50-FPN, 8 x 800x1333) ~30 s (build + 4 batches ~1.5 s,
  13 steps at ~0.15-0.3 s per model, first-use overheads); per small-data group ~12 s; the
  batch-16 group (2 models) ~10 s; in all ~140 s, so the cap (140 s) may cut the last, least
  important groups (fp16, batch 16).
- inference: two models, 16 images, batch 1 and 8, 2 rounds, fp32 and fp16, the ONNX export and
  onnxruntime: ~25 s.
- assigner: 6 rows of benchmarks/assign.py at 800x1333: ~10 s.
- accuracy: 620 steps per run; CPU time 14 s per step here (1 thread: 2.4 hours per run), a GPU
  is launch-bound at ~30-60 ms per step (about 1.2 TFLOP per step): ~30-40 s of steps + ~15 s of
  start-up and evaluation per run, two runs side by side: ~60-90 s per seed. It gets what the
  other sections leave of ``total_s`` (at least 145 s: seed 0 of both methods).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

COCO_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "dynamic_atss_r50_fpn_1x_coco.yaml")
MODELS = ("dynamic_atss", "atss", "gflv2", "vfnet", "tv_fcos", "tv_retinanet")
BASELINE = "tv_fcos"


@dataclass(frozen=True)
class Setting:
    """A network and input for the training rows: benchmarks/train_step.py's flags and overrides."""

    name: str
    flags: tuple[str, ...]
    models: tuple[str, ...] = MODELS


@dataclass(frozen=True)
class Plan:
    """Sizes and time caps of one check: FULL on a GPU (under 8 minutes), SMOKE on a CPU (under 1)."""

    settings: tuple[Setting, ...]
    groups: tuple[tuple[str, str], ...]  # (setting name, amp) in order of importance
    warmup: int
    rounds: int
    steps: int
    loader_workers: tuple[int, ...]
    loader_batches: int
    inference_flags: tuple[str, ...]
    inference_batches: tuple[int, ...]
    inference_images: int
    assign_size: tuple[int, int]
    assign_batches: tuple[int, ...]
    assign_gts: tuple[int, ...]
    assign_budget_s: float
    accuracy_overrides: tuple[str, ...]  # the paper's head at BCCD's native size
    accuracy_epochs: float | None  # None: accuracy_iters (the smoke's few steps)
    accuracy_iters: int
    seeds: tuple[int, ...]
    run_threads: int  # intra-op threads of each training run (two run side by side)
    caps: dict[str, float]
    total_s: float


# The paper's network (ResNet-50, FPN and head 256 wide, 4 convs) with COCO's 80 classes, random weights.
COCO_FLAGS = ("--config", COCO_CONFIG, "model.pretrained=null", "model.num_classes=80")
PAPER_HEAD = ("model.head_convs=4", "model.head_channels=256")
FULL = Plan(
    settings=(Setting("coco", (*COCO_FLAGS, "--size", "800x1333", "--batch", "8")),
              Setting("small_data", ("--batch", "8", "model.pretrained=null")),
              Setting("coco_batch16", (*COCO_FLAGS, "--size", "800x1333", "--batch", "16"), ("dynamic_atss", BASELINE))),
    groups=(("coco", "bf16"), ("coco", "none"), ("small_data", "bf16"), ("small_data", "none"), ("coco", "fp16"),
            ("small_data", "fp16"), ("coco_batch16", "bf16")),
    warmup=3, rounds=2, steps=5, loader_workers=(2, 8), loader_batches=20,
    inference_flags=(*COCO_FLAGS, "--size", "800x1333"), inference_batches=(1, 8), inference_images=16,
    assign_size=(800, 1333), assign_batches=(2, 16), assign_gts=(100, 500, 5000), assign_budget_s=0.5,
    accuracy_overrides=(*PAPER_HEAD, "data.min_sizes=[480]", "data.max_size=640", "data.test_min_size=480",
                        "data.num_workers=4"), accuracy_epochs=24, accuracy_iters=0,
    seeds=(0, 1), run_threads=4,
    caps={"cuda_tests": 45, "training": 140, "inference": 45, "assigner": 25, "accuracy": 300}, total_s=400,
)
# The smoke's "COCO" network is ResNet-18 (the same code path, a third of the CPU time of ResNet-50).
SMOKE_COCO = (*COCO_FLAGS, "--backbone", "resnet18", "--size", "64x96")
SMOKE = Plan(
    settings=(Setting("coco", (*SMOKE_COCO, "--batch", "2")),
              Setting("small_data", ("--size", "64x96", "--batch", "2", "model.pretrained=null"))),
    groups=(("coco", "bf16"), ("coco", "none"), ("small_data", "none")),
    warmup=0, rounds=1, steps=1, loader_workers=(0,), loader_batches=2,
    inference_flags=SMOKE_COCO, inference_batches=(1, 2), inference_images=2,
    assign_size=(64, 96), assign_batches=(2,), assign_gts=(5, 50), assign_budget_s=0.01,
    accuracy_overrides=(*PAPER_HEAD, "data.min_sizes=[64]", "data.max_size=96", "data.test_min_size=64",
                        "data.num_workers=0"),
    accuracy_epochs=None, accuracy_iters=2, seeds=(0,), run_threads=1,
    caps={"cuda_tests": 120, "training": 120, "inference": 120, "assigner": 60, "accuracy": 180}, total_s=600,
)


@dataclass
class Section:
    """One section's outcome: status ("ok", "skipped: ...", "failed: ..."), rows, and what it left out.

    A section is a sequence of parts (a group of models, a seed, ...), most important first, each
    done through :meth:`run`: a part that does not fit the time left is recorded in ``cut``, one that
    fails in ``errors``, and the section goes on with the next.
    """

    name: str
    cap_s: float
    status: str = "ok"
    seconds: float = 0.0
    rows: list[dict] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)  # left out by the time cap
    skipped: list[str] = field(default_factory=list)  # left out by the machine (no CUDA)
    errors: list[str] = field(default_factory=list)  # parts that failed
    notes: list[str] = field(default_factory=list)
    parts_s: dict[str, float] = field(default_factory=dict)  # seconds per part (to plan the next caps)

    def __post_init__(self) -> None:
        self.started = time.perf_counter()  # not a field: not in the report

    def time_left(self) -> float:
        return self.cap_s - (time.perf_counter() - self.started)

    def run(self, what: str, work: Callable[[], None], estimate_s: float | None = None) -> bool:
        """Do ``work`` if it fits the time left (estimated at ``estimate_s``; default: the longest
        part so far); returns whether it ran. Its seconds go to ``parts_s``."""
        estimate = max(self.parts_s.values(), default=0.0) if estimate_s is None else estimate_s
        if self.time_left() < estimate:
            self.cut.append(f"{what} (needs ~{estimate:.0f} s, {max(self.time_left(), 0):.0f} s left)")
            return False
        started = time.perf_counter()
        try:
            work()
        except Exception as error:  # one failed part (a model out of memory, say) must not lose the others
            traceback.print_exc()
            self.errors.append(f"{what}: {describe(error)}")
        self.parts_s[what] = round(time.perf_counter() - started, 1)
        return True


def describe(error: BaseException) -> str:
    """``Type: first line of the message``."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


@dataclass(frozen=True)
class Check:
    """What every section needs: the plan, the device, the data overrides, a scratch and an output folder."""

    plan: Plan
    device: torch.device
    data_overrides: tuple[str, ...]  # data.root=<bundle>/data/bccd, or () for the configs' own path
    work: Path
    out: Path

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


