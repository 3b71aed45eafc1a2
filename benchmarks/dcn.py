"""What the deformable convs (model.dcn_levels, model.head_dcn) cost: step times of DCN detectors
against the same detector without them, in the same run.

Each model row builds the plain detector and its DCN variants from one config (random weights:
the time does not depend on them), then alternates between them: one training step (forward,
Dynamic ATSS criterion, backward, SGD step) and one inference forward each per round, so that a
change in the machine's load hits every variant alike. Reports the median over the rounds and the
ratio to the plain detector of the same row. Variants marked "torchvision CPU kernel" run the
deformable convs through torchvision.ops.deform_conv2d on CPU instead of dynatss's grid_sample
formulation (dynatss/model/dcn.py), to show why the CPU path uses the latter.

    .venv/bin/python benchmarks/dcn.py                 # 1 thread, 7 rounds, all rows
    .venv/bin/python benchmarks/dcn.py --quick         # the MobileNetV2 / ResNet-18 rows, 3 rounds
    .venv/bin/python benchmarks/dcn.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
from torchvision.ops import deform_conv2d

from dynatss.config import Config, load_config
from dynatss.data.batch import Batch
from dynatss.engine.build import build_criterion
from dynatss.model import dcn
from dynatss.model.build import build_detector

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TORCHVISION_KERNEL = ", torchvision CPU kernel"  # variant label suffix


@dataclass(frozen=True)
class Row:
    """One detector (a config plus overrides) at one input size, and the DCN variants to compare."""

    name: str
    config: str
    overrides: tuple[str, ...]
    size: int
    batch: int
    variants: tuple[tuple[str, tuple[str, ...]], ...]  # (label, overrides); the first is the baseline


_RESNET_VARIANTS = (
    ("plain", ()),
    ("dcn_levels [5]", ("model.dcn_levels=[5]",)),
    ("dcn_levels [3,4,5]", ("model.dcn_levels=[3,4,5]",)),
    ("dcn_levels [3,4,5] + head_dcn", ("model.dcn_levels=[3,4,5]", "model.head_dcn=true")),
)
ROWS = (
    Row("MobileNetV2-FPN (bccd_mnv2_cpu)", "bccd_mnv2_cpu.yaml", ("model.num_classes=3",), 320, 2, (
        ("plain", ()), ("head_dcn", ("model.head_dcn=true",)),
        ("head_dcn" + TORCHVISION_KERNEL, ("model.head_dcn=true",)),
    )),
    Row("ResNet-18-FPN, bccd_mnv2_cpu's neck/head", "bccd_mnv2_cpu.yaml",
        ("model.num_classes=3", "model.backbone=resnet18"), 320, 2, (
            *_RESNET_VARIANTS,
            ("dcn_levels [3,4,5] + head_dcn" + TORCHVISION_KERNEL, ("model.dcn_levels=[3,4,5]", "model.head_dcn=true")),
        )),
    Row("ResNet-50-FPN (COCO recipe)", "dynamic_atss_r50_fpn_1x_coco.yaml", (), 320, 2, _RESNET_VARIANTS),
)


def synthetic_batch(size: int, batch: int, device: str) -> Batch:
    """Random images with three boxes each (the times do not depend on the content)."""
    generator = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[20.0, 30.0, 120.0, 160.0], [150.0, 40.0, 300.0, 200.0], [60.0, 200.0, 140.0, 300.0]])
    return Batch(
        images=torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator),
        gt_boxes=boxes.expand(batch, 3, 4).clone(), gt_labels=torch.tensor([[0, 1, 2]]).expand(batch, 3).clone(),
        gt_valid=torch.ones(batch, 3, dtype=torch.bool), ignore_boxes=torch.zeros(batch, 0, 4),
        ignore_valid=torch.zeros(batch, 0, dtype=torch.bool),
        image_sizes=torch.tensor([[size, size]]).expand(batch, 2).clone(),
        original_sizes=torch.tensor([[size, size]]).expand(batch, 2).clone(), image_ids=torch.arange(batch),
    ).to(device)


def _torchvision_kernel(features, offsets, masks, weight, bias, *, stride, padding, dilation):
    return deform_conv2d(features, offsets, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=masks)


class Variant:
    """A detector, its criterion and optimiser; ``train_step()`` and ``infer()`` return seconds."""

    def __init__(self, cfg: Config, batch: Batch, device: str, torchvision_kernel: bool = False) -> None:
        self.torchvision_kernel = torchvision_kernel
        self.model = build_detector(cfg.model).to(device)
        self.criterion = build_criterion(cfg, self.model)
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(parameters, lr=1e-4, momentum=0.9)
        self.batch, self.device = batch, device

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _kernel(self) -> contextlib.AbstractContextManager:
        if not self.torchvision_kernel:
            return contextlib.nullcontext()
        return mock.patch.object(dcn, "deform_conv2d_by_sampling", _torchvision_kernel)

    def train_step(self) -> float:
        self.model.train()
        self._sync()
        start = time.perf_counter()
        with self._kernel():
            loss = self.criterion(self.model(self.batch.images), self.batch, progress=0.0)
            self.optimizer.zero_grad()
            loss.total.backward()
        self.optimizer.step()
        self._sync()
        return time.perf_counter() - start

    def infer(self) -> float:
        self.model.eval()
        self._sync()
        start = time.perf_counter()
        with torch.no_grad(), self._kernel():
            self.model(self.batch.images)
        self._sync()
        return time.perf_counter() - start


def measure(row: Row, rounds: int, device: str) -> list[tuple[str, float, float]]:
    """(label, median training-step seconds, median inference seconds) per variant of ``row``."""
    batch = synthetic_batch(row.size, row.batch, device)
    base = ("model.pretrained=null", *row.overrides)
    variants = {}
    for label, overrides in row.variants:
        torch.manual_seed(0)
        cfg = load_config(CONFIGS / row.config, [*base, *overrides])
        variants[label] = Variant(cfg, batch, device, torchvision_kernel=label.endswith(TORCHVISION_KERNEL))
    for variant in variants.values():  # warm-up: allocator, kernels, first-call overheads
        variant.train_step()
        variant.infer()
    times: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in variants}
    for _ in range(rounds):
        for label, variant in variants.items():
            times[label][0].append(variant.train_step())
            times[label][1].append(variant.infer())
    return [(label, statistics.median(train), statistics.median(infer)) for label, (train, infer) in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1: stable on a shared CPU)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per variant (median reported)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="the two small rows, 3 rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, rounds = (ROWS[:2], 3) if args.quick else (ROWS, args.rounds)
    print(f"device {args.device}, {torch.get_num_threads()} thread(s), {rounds} rounds, torch {torch.__version__}")
    print("| detector | input | variant | train step ms | ratio | inference ms | ratio |")
    print("|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        results = measure(row, rounds, args.device)
        _, base_train, base_infer = results[0]
        for label, train, infer in results:
            print(
                f"| {row.name} | {row.batch} x {row.size}x{row.size} | {label} | {1000 * train:.0f} | "
                f"{train / base_train:.2f}x | {1000 * infer:.0f} | {infer / base_infer:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
