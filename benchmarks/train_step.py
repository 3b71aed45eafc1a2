"""Benchmark: images/s of a full training step, ours beside torchvision's FCOS and RetinaNet.

The config is the CPU experiment config of experiments/ablation.py: the small-data recipe
(configs/recipes/small_data_cpu.yaml) with configs/experiments/bccd.yaml, each model with its
configs/ablations/<variant>.yaml. One step is what the training loop does per iteration with the data already in memory: forward,
assignment, losses, backward, optimizer and lr-schedule step. Ours run through the engine's own
step (``dynatss.engine.train._step``, logging conversions included); the torchvision peers are
built by experiments/peers.py on the same backbone trunk, FPN, head depth and width, input size
and batch, and step with the same SGD and lr schedule (their inputs are converted to torchvision's
lists before timing). Models alternate within each round, so every model sees the same machine
load; the table gives the median over all timed steps and the ratio to torchvision FCOS.

The criterion (assignment + losses; torchvision: ``compute_loss``) is timed separately inside
each step, between two CUDA events on a GPU (no synchronize inside the step). Peak memory: on the
CPU, each model steps twice in a fresh subprocess and the table gives the rise of its resident
memory (the kernel's high-water mark VmHWM, reset before the first step) over the resident memory
before that step; on CUDA, torch.cuda.max_memory_allocated above the memory allocated before the
step.

    PYTHONPATH=. python benchmarks/train_step.py                       # the CPU config, 1 thread
    PYTHONPATH=. python benchmarks/train_step.py --rounds 2 --steps 3  # quick
    PYTHONPATH=. python benchmarks/train_step.py --device cuda --amp bf16 --batch 16 \\
        --size 800x1333 --backbone resnet50 --threads 8 model.pretrained=null
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass, replace
from functools import lru_cache, wraps
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import (
    BCCD_NUM_CLASSES,
    EventStopwatch,
    Stopwatch,
    Timings,
    machine_line,
    markdown_table,
    parse_size,
    peak_resident_mb,
    ratio,
    reset_peak_resident,
    resident_mb,
)
from dynatss.config import Config, load_config
from dynatss.data.batch import Batch
from dynatss.data.datasets import DatasetRead, read_dataset
from dynatss.data.loader import build_train_loader
from dynatss.engine.build import build_criterion, build_model
from dynatss.engine.from_data import resolve_from_data
from dynatss.engine.lr_schedule import build_lr_scheduler
from dynatss.engine.optimizer import build_optimizer
from dynatss.engine.precision import autocast_context
from dynatss.engine.state import TrainState
from dynatss.engine.train import _step
from experiments.ablation import BASE_CONFIG, dataset_overrides, variant_overrides
from experiments.peers import build_peer, peer_inputs, peer_step
from experiments.variants import find_variants

# Benchmark name -> experiments/ablation.py variant (its configs/ablations/<name>.yaml overrides).
MODELS = {
    "atss": "atss",
    "dynamic_atss": "ciou_qfl_iou",
    "gflv2": "gflv2",
    "vfnet": "vfnet",
    "tv_fcos": "tv_fcos",
    "tv_retinanet": "tv_retinanet",
}
BASELINE = "tv_fcos"
NUM_BATCHES = 4  # distinct real batches cycled through, prepared before any timing
MEMORY_STEPS = 2


def model_config(name: str, args: argparse.Namespace) -> Config:
    """The CPU experiment config (the recipe + configs/experiments/<dataset>.yaml, as
    experiments/ablation.py builds it) + the variant's overrides + the command line's."""
    variant = find_variants([MODELS[name]])[0]
    overrides = [*dataset_overrides(args.dataset), f"model.num_classes={BCCD_NUM_CLASSES}",
                 f"train.device={args.device}", f"solver.amp={args.amp}", *variant_overrides(variant)]
    if args.batch:
        overrides.append(f"solver.batch_size={args.batch}")
    if args.backbone:
        overrides.append(f"model.backbone={args.backbone}")
    cfg = load_config(args.config, overrides + list(args.overrides))
    # The recipe's anchors (auto) and schedule (epochs), resolved from the data as `train` does.
    split = read_split(cfg.data.format, str(cfg.data.root), cfg.data.train_split)
    return resolve_from_data(cfg, split.records, split.meta)[0]


def resized(batch: Batch, size: tuple[int, int]) -> Batch:
    """``batch`` with every image stretched to exactly ``size`` (h, w) and its boxes scaled alike."""
    height, width = size
    images = F.interpolate(batch.images.float(), size=size, mode="bilinear", align_corners=False)
    scale_h = height / batch.image_sizes[:, 0].float()  # [B]
    scale_w = width / batch.image_sizes[:, 1].float()  # [B]
    scale = torch.stack((scale_w, scale_h, scale_w, scale_h), dim=-1)[:, None, :]  # [B, 1, 4]
    return replace(
        batch,
        images=images.round().clamp(0, 255).to(torch.uint8),
        gt_boxes=batch.gt_boxes * scale,
        ignore_boxes=batch.ignore_boxes * scale,
        image_sizes=torch.tensor([[height, width]] * len(batch)),
    )


@lru_cache(maxsize=4)
def read_split(data_format: str, root: str, split: str) -> DatasetRead:
    """A split read once per process: every model of a run trains on the same data (a VOC read
    parses every annotation file, about 0.5 s for BCCD on the CPU)."""
    return read_dataset(data_format, root, split)


def load_batches(cfg: Config, size: tuple[int, int] | None, device: torch.device) -> list[Batch]:
    """NUM_BATCHES training batches of the config's data (augmentation as in training), on ``device``."""
    split = read_split(cfg.data.format, str(cfg.data.root), cfg.data.train_split)
    loader = build_train_loader(split.records, replace(cfg.data, num_workers=0),
                                batch_size=cfg.solver.batch_size, seed=cfg.train.seed)
    batches = [next(loader) for _ in range(NUM_BATCHES)]
    return [(resized(b, size) if size else b).to(device) for b in batches]


def timed(function, timings: Timings, device: torch.device):
    """``function`` whose every call adds its duration to ``timings`` (CUDA events on a GPU)."""

    @wraps(function)
    def wrapper(*args, **kwargs):
        with EventStopwatch(timings, device):
            return function(*args, **kwargs)

    return wrapper


@dataclass
class Runner:
    """One model ready to step: ``step(batch_index)`` runs a full training step."""

    name: str
    step: object
    step_times: Timings
    criterion_times: Timings


def our_runner(name: str, cfg: Config, batches: list[Batch], device: torch.device) -> Runner:
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, device).train()
    criterion_times = Timings()
    criterion = timed(build_criterion(cfg, model), criterion_times, device)
    state = TrainState.create(model, cfg, device)
    autocast = autocast_context(cfg, device)

    def step(index: int) -> None:
        _step(state, model, criterion, batches[index % len(batches)], cfg, autocast, device)
        state.iteration += 1

    return Runner(name, step, Timings(), criterion_times)


def peer_runner(name: str, cfg: Config, batches: list[Batch], device: torch.device) -> Runner:
    torch.manual_seed(cfg.train.seed)
    model = build_peer(find_variants([MODELS[name]])[0].peer, cfg).to(device).train()
    criterion_times = Timings()
    model.compute_loss = timed(model.compute_loss, criterion_times, device)
    optimizer = build_optimizer(model, cfg.solver)
    scheduler = build_lr_scheduler(optimizer, cfg.solver)
    autocast = autocast_context(cfg, device)
    inputs = [peer_inputs(batch) for batch in batches]  # torchvision's lists, before timing

    def step(index: int) -> None:
        images, targets = inputs[index % len(inputs)]
        total, losses, grad_norm = peer_step(model, optimizer, scheduler, images, targets,
                                             cfg.solver.clip_grad_norm, index, autocast)
        # What peers.py logs every step (one host sync per value, as torchvision's references).
        [float(value.detach()) for value in (total, *losses.values(), grad_norm)]

    return Runner(name, step, Timings(), criterion_times)


def build_runner(name: str, args: argparse.Namespace, device: torch.device) -> Runner:
    cfg = model_config(name, args)
    batches = load_batches(cfg, parse_size(args.size), device)
    make = peer_runner if find_variants([MODELS[name]])[0].peer else our_runner
    return make(name, cfg, batches, device)


def run_rounds(runners: list[Runner], args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Warm up, then ``rounds`` x (each model ``steps`` timed steps); CUDA: extra peak MB per model."""
    peaks: dict[str, float] = {}
    for runner in runners:
        for index in range(args.warmup):
            runner.step(index)
        runner.criterion_times.clear()
    for round_index in range(args.rounds):
        for runner in runners:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            for index in range(args.steps):
                with Stopwatch(runner.step_times, device):
                    runner.step(args.warmup + round_index * args.steps + index)
            if device.type == "cuda":
                extra = (torch.cuda.max_memory_allocated(device) - before) / 2**20
                peaks[runner.name] = max(peaks.get(runner.name, 0.0), extra)
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return peaks


def cpu_peak_memory(name: str, args: argparse.Namespace) -> float:
    """Extra resident MB of MEMORY_STEPS steps of ``name`` in a fresh process (CPU only)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name, *child_arguments(args)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["extra_mb"]


def child_arguments(args: argparse.Namespace) -> list[str]:
    forwarded = ["--config", str(args.config), "--dataset", args.dataset, "--device", args.device, "--amp", args.amp,
                 "--threads", str(args.threads)]
    for flag in ("batch", "backbone", "size"):
        if getattr(args, flag):
            forwarded += [f"--{flag}", str(getattr(args, flag))]
    return forwarded + list(args.overrides)


def memory_child(name: str, args: argparse.Namespace) -> None:
    runner = build_runner(name, args, torch.device(args.device))
    before = resident_mb()
    reset_peak_resident()
    for index in range(MEMORY_STEPS):
        runner.step(index)
    print(json.dumps({"extra_mb": peak_resident_mb() - before}))


def report(runners: list[Runner], peaks: dict[str, float], args: argparse.Namespace, device: torch.device) -> str:
    clock = "cpu" if device.type == "cpu" else "wall"
    batch = model_config(runners[0].name, args).solver.batch_size
    rates = {r.name: {c: batch / r.step_times.median(c) for c in ("wall", "cpu")} for r in runners}
    baseline = rates.get(BASELINE, {"wall": float("nan"), "cpu": float("nan")})
    header = ["model", "img/s", f"vs {BASELINE}", "ms/step", "criterion ms", "criterion share", "peak MB"]
    if clock == "cpu":
        header[1:3] = ["img/s (CPU time)", f"vs {BASELINE}", "img/s (wall)", f"vs {BASELINE} (wall)"]
    rows = []
    for r in runners:
        step_s, criterion_s = r.step_times.median(clock), r.criterion_times.median(clock)
        row = [r.name, f"{rates[r.name][clock]:.2f}", ratio(rates[r.name][clock], baseline[clock])]
        if clock == "cpu":
            row += [f"{rates[r.name]['wall']:.2f}", ratio(rates[r.name]["wall"], baseline["wall"])]
        row += [f"{1000 * step_s:.0f}", f"{1000 * criterion_s:.0f}", f"{100 * criterion_s / step_s:.1f}%",
                f"{peaks[r.name]:.0f}" if r.name in peaks else "-"]
        rows.append(row)
    return markdown_table(header, rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=BASE_CONFIG, help="base config (the recipe)")
    parser.add_argument("--dataset", default="bccd", help="configs/experiments/<dataset>.yaml")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {list(MODELS)}")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over the models")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per model and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model before the rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="autocast (CUDA only)")
    parser.add_argument("--batch", type=int, help="images per step (default: the config's solver.batch_size)")
    parser.add_argument("--size", help="HxW: stretch every image to this input size (default: the loader's)")
    parser.add_argument("--backbone", help="model.backbone (default: the config's)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-model peak memory (CPU)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides for every model")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.memory_child:
        memory_child(args.memory_child, args)
        return 0
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise SystemExit(f"--models: unknown {unknown} (choose from {list(MODELS)})")
    print(f"before: {machine_line(device, args.threads)}", flush=True)
    runners = [build_runner(name, args, device) for name in names]
    peaks = run_rounds(runners, args, device)
    if device.type == "cpu" and not args.no_memory:
        peaks = {name: cpu_peak_memory(name, args) for name in names}
    print(f"after: {machine_line(device, args.threads)}")
    cfg = model_config(names[0], args)
    print(f"config {args.config} + configs/experiments/{args.dataset}.yaml + variants; batch {cfg.solver.batch_size}, "
          f"backbone {cfg.model.backbone} P{cfg.model.min_level}-P{cfg.model.max_level}, "
          f"size {args.size or 'the loader resize'}, amp {args.amp}; median of {args.rounds} x {args.steps} "
          f"steps after {args.warmup} warm-up steps\n")
    print(report(runners, peaks, args, device))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
