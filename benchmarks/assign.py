"""Benchmark: the batched (Dynamic) ATSS assigner against a per-image baseline shaped like the
official code, in the same run.

The baseline follows the structure of the official ATSS / DLA-Combined-IoUs `prepare_targets`:
one image at a time, anchor and predicted IoUs against all anchors ([A, G] matrices), centre
distances to all anchors, per-level top-k, a Python loop over GTs to offset candidate indices,
the centre-inside test on the flattened [G * A] candidates and an [A, G] max for conflicts.

Each configuration runs in a fresh subprocess so that its peak memory (extra RSS over the
set-up on CPU, torch.cuda.max_memory_allocated on CUDA) is its own. Prints a Markdown table.

    python benchmarks/assign.py                 # the full table (about 10 minutes on 2 CPU cores)
    python benchmarks/assign.py --quick         # a few rows
    python benchmarks/assign.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch

from dynatss.assign import atss_assign
from dynatss.model.anchors import AnchorGenerator

STRIDES = [8, 16, 32, 64, 128]
SIZE_DIVISIBILITY = 128
INF = 100_000_000.0


def anchors_for(height: int, width: int, device: str) -> tuple[torch.Tensor, list[int]]:
    """The model's anchors for an input padded to a multiple of 128, as the data loader pads."""
    height = math.ceil(height / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
    width = math.ceil(width / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
    generator = AnchorGenerator(strides=STRIDES, scales=[8.0], ratios=[1.0])
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in STRIDES]
    return generator((height, width), sizes, torch.device(device), torch.float32)


def random_scene(batch: int, num_gts: int, height: int, width: int, anchors: torch.Tensor, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    wh = torch.rand(batch, num_gts, 2, generator=generator) ** 2 * torch.tensor([width, height]) * 0.5 + 4
    xy = torch.rand(batch, num_gts, 2, generator=generator) * (torch.tensor([width, height]) - wh)
    gt_boxes = torch.cat([xy, xy + wh], dim=-1)
    gt_valid = torch.ones(batch, num_gts, dtype=torch.bool)
    jitter = torch.randn(batch, anchors.shape[0], 4, generator=generator) * 8
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    pred_boxes = torch.cat([centers - 20, centers + 20], dim=-1).cpu().unsqueeze(0) + jitter
    return gt_boxes, gt_valid, pred_boxes


def _pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2 - inter)


def per_image_baseline(anchors, num_anchors_per_level, gt_boxes, gt_valid, pred_boxes, topk=9):
    """One image at a time, dense [A, G] matrices, a Python loop over GTs (official structure)."""
    results = []
    num_anchors = anchors.shape[0]
    for image in range(gt_boxes.shape[0]):
        boxes = gt_boxes[image][gt_valid[image]]
        num_gt = boxes.shape[0]
        anchor_ious = _pairwise_iou(anchors, boxes)  # [A, G]
        pred_ious = _pairwise_iou(pred_boxes[image], boxes)  # [A, G]
        combined = anchor_ious + pred_ious
        gt_centers = (boxes[:, :2] + boxes[:, 2:]) / 2
        anchor_centers = (anchors[:, :2] + anchors[:, 2:]) / 2
        distances = (anchor_centers[:, None, :] - gt_centers[None, :, :]).pow(2).sum(-1).sqrt()
        candidate_idxs = []
        start = 0
        for count in num_anchors_per_level:
            k = min(topk, count)
            _, idx = distances[start : start + count].topk(k, dim=0, largest=False)
            candidate_idxs.append(idx + start)
            start += count
        candidate_idxs = torch.cat(candidate_idxs, dim=0)  # [K, G]
        columns = torch.arange(num_gt, device=anchors.device)
        cand_anchor = anchor_ious[candidate_idxs, columns]
        cand_pred = pred_ious[candidate_idxs, columns]
        threshold = cand_anchor.mean(0) + cand_anchor.std(0) + cand_pred.mean(0) + cand_pred.std(0)
        is_pos = combined[candidate_idxs, columns] >= threshold[None, :]
        for ng in range(num_gt):  # the official code's loop over GTs
            candidate_idxs[:, ng] += ng * num_anchors
        e_cx = anchor_centers[:, 0].view(1, -1).expand(num_gt, num_anchors).contiguous().view(-1)
        e_cy = anchor_centers[:, 1].view(1, -1).expand(num_gt, num_anchors).contiguous().view(-1)
        flat = candidate_idxs.view(-1)
        cx, cy = e_cx[flat].view(-1, num_gt), e_cy[flat].view(-1, num_gt)
        inside = torch.stack([cx - boxes[:, 0], cy - boxes[:, 1], boxes[:, 2] - cx, boxes[:, 3] - cy],
                             dim=1).min(dim=1)[0] > 0.01
        is_pos = is_pos & inside
        combined_inf = torch.full_like(combined, -INF).t().contiguous().view(-1)
        index = candidate_idxs.view(-1)[is_pos.view(-1)]
        combined_inf[index] = combined.t().contiguous().view(-1)[index]
        values, gt_index = combined_inf.view(num_gt, -1).t().max(dim=1)
        gt_index[values == -INF] = -1
        results.append(gt_index)
    return results


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: str, budget_s: float, max_repeats: int) -> float:
    fn()  # warm-up
    _sync(device)
    times = []
    start_all = time.perf_counter()
    while len(times) < max_repeats and (time.perf_counter() - start_all < budget_s or len(times) < 1):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(height, width, batch, num_gts, device, with_baseline, budget_s) -> dict:
    anchors, counts = anchors_for(height, width, device)
    gt_boxes, gt_valid, pred_boxes = (t.to(device) for t in random_scene(batch, num_gts, height, width, anchors))

    def ours():
        return atss_assign(anchors, counts, gt_boxes, gt_valid, pred_boxes)

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        ours()
        torch.cuda.synchronize()
        peak_mb = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        before = _rss_mb()
        ours()
        peak_mb = max(_peak_rss_mb() - before, 0.0)
    row = {"size": f"{height}x{width}", "batch": batch, "gts": num_gts, "anchors": anchors.shape[0],
           "ours_ms": 1000 * _time(ours, device, budget_s, 20), "ours_peak_mb": peak_mb}
    if with_baseline:
        row["baseline_ms"] = 1000 * _time(
            lambda: per_image_baseline(anchors, counts, gt_boxes, gt_valid, pred_boxes), device, budget_s, 5)
        # Same positives, so that the speed-up is not bought by a different answer.
        result = ours()
        expected = per_image_baseline(anchors, counts, gt_boxes, gt_valid, pred_boxes)
        row["same_positives"] = all(torch.equal(result.gt_index[i], expected[i]) for i in range(batch))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="a few rows only")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of repeats per timing")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        height, width, batch, num_gts, with_baseline = json.loads(args.one)
        print(json.dumps(run_one(height, width, batch, num_gts, args.device, with_baseline, args.budget)))
        return

    sizes = [(512, 512), (800, 1333)]
    gts = [5, 20, 100, 500, 5000]
    batches = [2, 16]
    if args.quick:
        sizes, gts, batches = [(800, 1333)], [100, 500, 5000], [2]
    print(f"# assigner benchmark: device={args.device}, torch {torch.__version__}, "
          f"threads={torch.get_num_threads()}, dynamic mode (PIoU + AIoU)")
    print("| input | batch | GTs/image | anchors | ours ms | ours peak MB | baseline ms | speed-up | same positives |")
    print("|---|---|---|---|---|---|---|---|---|")
    for height, width in sizes:
        for batch in batches:
            for num_gts in gts:
                # The dense baseline needs several [A, 5000] matrices per image: only at batch 2.
                with_baseline = not (num_gts == 5000 and batch > 2)
                command = [sys.executable, __file__, "--device", args.device, "--budget", str(args.budget),
                           "--threads", str(torch.get_num_threads()),
                           "--one", json.dumps([height, width, batch, num_gts, with_baseline])]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"| {height}x{width} | {batch} | {num_gts} | failed: {done.stderr.strip()[-200:]} |")
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                baseline = row.get("baseline_ms")
                ratio = f"{baseline / row['ours_ms']:.1f}x" if baseline else "-"
                print(f"| {row['size']} | {batch} | {num_gts} | {row['anchors']} | {row['ours_ms']:.1f} | "
                      f"{row['ours_peak_mb']:.0f} | {baseline:.1f} | {ratio} | {row.get('same_positives', '-')} |"
                      if baseline else
                      f"| {row['size']} | {batch} | {num_gts} | {row['anchors']} | {row['ours_ms']:.1f} | "
                      f"{row['ours_peak_mb']:.0f} | - | - | - |", flush=True)


if __name__ == "__main__":
    main()
