"""Benchmark: end-to-end detection, ours (eager PyTorch, ONNX in onnxruntime) beside torchvision FCOS.

End to end means from decoded uint8 images [3, h, w] in memory to detections in original-image
pixels on the CPU: pre-processing (resize to the test scale, pad / batch), the network, and
post-processing (score threshold, top-k, decoding, NMS, mapping boxes back). The three paths:

- ``dynatss``: ``dynatss.model.inference`` (prepare_images, detect_prepared), what ``dynatss predict`` runs;
- ``dynatss_onnx``: the same weights exported by ``dynatss.model.onnx_export.export_onnx`` (any batch
  and size) and run by ``dynatss.api.backends.OnnxBackend``, what ``Detector`` runs for a .onnx
  file (onnxruntime, all graph optimisations, ``--threads`` intra-op threads), its resizing,
  padding and mapping back included;
- ``tv_fcos``: torchvision's FCOS built by experiments/peers.py on the same backbone trunk, FPN,
  head depth and width, with torchvision's own transform (normalise, resize to the same test
  scale, batch) and post-processing, called as torchvision documents (float images in 0..1).

Weights: ImageNet backbone and freshly initialised heads unless ``--weights`` / ``--peer-weights``
give trained checkpoints. Fresh heads score every anchor near their prior (0.01), below the 0.05
threshold, so NMS gets little to do; ``--score-threshold 0`` gives the heaviest post-processing
(every top-k candidate goes to NMS). The table reports detections per image so the load is visible.

    PYTHONPATH=. python benchmarks/inference.py                    # batch 1 and 8, 1 thread
    PYTHONPATH=. python benchmarks/inference.py --rounds 2 --images 8
    PYTHONPATH=. python benchmarks/inference.py --device cuda --amp bf16 --batch 1 16 \\
        --size 800x1333 --backbone resnet50 model.pretrained=null
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from benchmarks.common import BCCD_NUM_CLASSES, Stopwatch, Timings, machine_line, markdown_table, ratio
from dynatss.api.backends import OnnxBackend
from dynatss.config import Config, load_config
from dynatss.data.datasets import read_dataset
from dynatss.data.records import DatasetMeta
from dynatss.data.transforms import load_image
from dynatss.engine.precision import autocast_context
from dynatss.engine.trained import load_trained
from dynatss.model.build import build_detector
from dynatss.model.detector import IMAGENET_MEAN, IMAGENET_STD, PIXEL_MAX
from dynatss.model.inference import detect_prepared, prepare_images
from dynatss.model.onnx_export import export_onnx, onnx_metadata
from dynatss.version import __version__
from experiments.ablation import BASE_CONFIG, dataset_overrides, variant_overrides
from experiments.peers import build_peer
from experiments.variants import find_variants

OURS, ONNX, PEER = "dynatss", "dynatss_onnx", "tv_fcos"
Detect = Callable[[list[Tensor]], list[dict[str, Tensor]]]


def benchmark_config(args: argparse.Namespace) -> Config:
    """The CPU experiment config (recipe + dataset) with the Dynamic ATSS variant (or ``--variant``)."""
    overrides = [*dataset_overrides(args.dataset), f"model.num_classes={BCCD_NUM_CLASSES}", f"solver.amp={args.amp}",
                 *variant_overrides(find_variants([args.variant])[0])]
    if args.backbone:
        overrides.append(f"model.backbone={args.backbone}")
    if args.size:
        height, _, width = args.size.lower().partition("x")
        overrides += [f"data.test_min_size={height}", f"data.max_size={width}"]
    if args.score_threshold is not None:
        overrides.append(f"inference.score_threshold={args.score_threshold}")
    return load_config(args.config, overrides + list(args.overrides))


def load_images(cfg: Config, count: int) -> list[Tensor]:
    """The first ``count`` decoded images (uint8 [3, h, w]) of the config's validation split."""
    split = read_dataset(cfg.data.format, cfg.data.root, cfg.data.val_split)
    return [load_image(record.path) for record in split.records[:count]]


def ours(cfg: Config, weights: str | None, device: torch.device) -> tuple[nn.Module, DatasetMeta]:
    """Our detector in eval mode (trained weights, or ImageNet backbone + fresh heads) and its classes."""
    if weights:
        model, _, meta = load_trained(weights, device)
        return model, meta
    torch.manual_seed(0)
    meta = read_dataset(cfg.data.format, cfg.data.root, cfg.data.val_split).meta
    return build_detector(cfg.model).to(device).eval(), meta


def eager_detect(model: nn.Module, cfg: Config, device: torch.device) -> Detect:
    autocast = autocast_context(cfg, device)

    def run(images: list[Tensor]) -> list[dict[str, Tensor]]:
        return detect_prepared(model, prepare_images(images, cfg.data), cfg.inference, autocast=autocast)

    return run


def onnx_detect(model: nn.Module, cfg: Config, meta: DatasetMeta, threads: int, path: Path,
                device: torch.device = torch.device("cpu")) -> Detect:
    """``model`` exported with its metadata and run by dynatss's ONNX backend (what Detector runs);
    ``device`` cuda asks for onnxruntime's CUDA provider, used when installed (else its CPU one)."""
    export_onnx(model, path, inference_cfg=cfg.inference, metadata=onnx_metadata(cfg.data, cfg.inference, meta, __version__))
    backend = OnnxBackend(path, device=device, threads=threads)

    def run(images: list[Tensor]) -> list[dict[str, Tensor]]:
        return backend.detect(images)  # every detection of the exported rule (cfg.inference), as eager_detect

    return run


def peer(cfg: Config, weights: str | None, device: torch.device) -> nn.Module:
    """torchvision FCOS on our backbone with torchvision's own test transform (resize included)."""
    torch.manual_seed(0)
    model = build_peer("fcos", cfg)
    if weights:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["model"])
    model.transform = GeneralizedRCNNTransform(
        cfg.data.test_min_size, cfg.data.max_size, list(IMAGENET_MEAN), list(IMAGENET_STD),
        size_divisible=cfg.data.size_divisibility,
    )
    return model.to(device).eval()


def peer_detect(model: nn.Module, cfg: Config, device: torch.device) -> Detect:
    autocast = autocast_context(cfg, device)

    def run(images: list[Tensor]) -> list[dict[str, Tensor]]:
        with torch.inference_mode(), autocast:
            results = model([image.to(device).float() / PIXEL_MAX for image in images])
        return [{key: value.cpu() for key, value in result.items()} for result in results]

    return run


@dataclass
class Row:
    name: str
    batch: int
    run: Detect
    timings: Timings = dataclasses.field(default_factory=Timings)
    detections: int = 0
    images: int = 0


def run_rounds(rows: list[Row], images: list[Tensor], args: argparse.Namespace, device: torch.device) -> None:
    """Each row detects on all images in batches of its size once per round; rows alternate."""
    for row in rows:  # warm-up: one call each
        row.run(images[: row.batch])
    for round_index in range(args.rounds):
        for row in rows:
            for start in range(0, len(images) - row.batch + 1, row.batch):
                with Stopwatch(row.timings, device):
                    results = row.run(images[start : start + row.batch])
                row.detections += sum(len(result.get("scores", ())) for result in results)
                row.images += len(results)
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)


def report(rows: list[Row], device: torch.device) -> str:
    clocks = ("cpu", "wall") if device.type == "cpu" else ("wall",)
    header = ["path", "batch"]
    for clock in clocks:
        label = "CPU time" if clock == "cpu" else "wall"
        header += [f"img/s ({label})", f"vs {PEER}", f"ms/image ({label})"]
    header.append("detections/image")
    table = []
    for row in rows:
        baseline = next((r for r in rows if r.name == PEER and r.batch == row.batch), None)
        cells = [row.name, str(row.batch)]
        for clock in clocks:
            seconds = row.timings.median(clock)
            peer_rate = row.batch / baseline.timings.median(clock) if baseline else float("nan")
            cells += [f"{row.batch / seconds:.2f}", ratio(row.batch / seconds, peer_rate),
                      f"{1000 * seconds / row.batch:.1f}"]
        cells.append(f"{row.detections / row.images:.1f}")
        table.append(cells)
    return markdown_table(header, table)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=BASE_CONFIG, help="base config (the recipe)")
    parser.add_argument("--dataset", default="bccd", help="configs/experiments/<dataset>.yaml")
    parser.add_argument("--variant", default="ciou_qfl_iou", help="configs/ablations/<variant>.yaml (ours)")
    parser.add_argument("--paths", default=f"{OURS},{ONNX},{PEER}", help="comma-separated subset")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=16, help="validation images decoded into memory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="ONNX always runs on the CPU")
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--size", help="HxW: the test scale (shorter side x longer-side limit)")
    parser.add_argument("--backbone")
    parser.add_argument("--weights", help="our trained checkpoint (.pth or .safetensors)")
    parser.add_argument("--peer-weights", help="experiments/peers.py fcos checkpoint (checkpoints/last.pth)")
    parser.add_argument("--score-threshold", type=float)
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    return parser.parse_args(argv)


def build_rows(args: argparse.Namespace, cfg: Config, images: list[Tensor], device: torch.device,
               workdir: Path) -> list[Row]:
    paths = [name.strip() for name in args.paths.split(",")]
    rows = []
    model, meta = ours(cfg, args.weights, device)
    if OURS in paths:
        rows += [Row(OURS, batch, eager_detect(model, cfg, device)) for batch in args.batch]
    if ONNX in paths and device.type == "cpu":
        run = onnx_detect(model, cfg, meta, args.threads, workdir / "model.onnx")
        rows += [Row(ONNX, batch, run) for batch in args.batch]
    elif ONNX in paths:
        print(f"{ONNX}: onnxruntime runs on the CPU here; left out with --device {device.type}", file=sys.stderr)
    if PEER in paths:
        rows += [Row(PEER, batch, peer_detect(peer(cfg, args.peer_weights, device), cfg, device))
                 for batch in args.batch]
    return sorted(rows, key=lambda row: (row.batch, paths.index(row.name)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = benchmark_config(args)
    images = load_images(cfg, args.images)
    print(f"before: {machine_line(device, args.threads)}", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        rows = build_rows(args, cfg, images, device, Path(workdir))
        run_rounds(rows, images, args, device)
    print(f"after: {machine_line(device, args.threads)}")
    print(f"{len(images)} images of {cfg.data.root}/{cfg.data.val_split}, test scale {cfg.data.test_min_size} "
          f"(longer side <= {cfg.data.max_size}), backbone {cfg.model.backbone} P{cfg.model.min_level}-P{cfg.model.max_level}, "
          f"variant {args.variant}, "
          f"score threshold {cfg.inference.score_threshold}; median over {args.rounds} rounds\n")
    print(report(rows, device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
