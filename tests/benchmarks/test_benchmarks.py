"""The throughput benchmarks' own logic: loss-curve comparison, the input resizing they time, the clocks."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.common import EventStopwatch, Timings
from benchmarks.compare_losses import main as compare_losses
from benchmarks.train_step import resized
from dynatss.data.batch import Batch


def _run(tmp_path, name: str, losses: list[float]):
    run_dir = tmp_path / name
    run_dir.mkdir()
    lines = [{"type": "train", "iter": i + 1, "loss": loss, "loss_cls": loss / 2} for i, loss in enumerate(losses)]
    lines.append({"type": "eval", "iter": len(losses), "metrics": {"AP": 0.5}})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(run_dir)


def test_same_curves_pass_and_changed_curves_fail(tmp_path, capsys):
    reference = _run(tmp_path, "a", [2.0, 1.5, 1.2])
    assert compare_losses([reference, _run(tmp_path, "same", [2.0, 1.5, 1.2]), "--keys", "loss,loss_cls"]) == 0
    # Rounding noise growing later is accepted; a different first step is not.
    assert compare_losses([reference, _run(tmp_path, "noise", [2.0, 1.501, 1.203]), "--keys", "loss"]) == 0
    assert compare_losses([reference, _run(tmp_path, "first", [2.001, 1.5, 1.2]), "--keys", "loss"]) == 1
    assert compare_losses([reference, _run(tmp_path, "later", [2.0, 1.5, 1.3]), "--keys", "loss"]) == 1
    assert compare_losses([reference, _run(tmp_path, "short", [2.0, 1.5]), "--keys", "loss"]) == 1
    assert "DIFFERENT" in capsys.readouterr().out


def test_resized_batch_scales_boxes_with_the_pixels():
    images = torch.zeros(1, 3, 40, 60, dtype=torch.uint8)
    images[0, :, 10:20, 30:45] = 255  # a white box at x 30..45, y 10..20
    boxes = torch.tensor([[[30.0, 10.0, 45.0, 20.0]]])
    batch = Batch(images=images, gt_boxes=boxes, gt_labels=torch.zeros(1, 1, dtype=torch.int64),
                  gt_valid=torch.ones(1, 1, dtype=torch.bool), ignore_boxes=torch.zeros(1, 0, 4),
                  ignore_valid=torch.zeros(1, 0, dtype=torch.bool), image_sizes=torch.tensor([[40, 60]]),
                  original_sizes=torch.tensor([[40, 60]]), image_ids=torch.tensor([0]))
    out = resized(batch, (80, 90))  # y x2, x x1.5
    assert out.images.shape == (1, 3, 80, 90) and out.images.dtype == torch.uint8
    torch.testing.assert_close(out.gt_boxes, torch.tensor([[[45.0, 20.0, 67.5, 40.0]]]))
    assert out.image_sizes.tolist() == [[80, 90]]
    x0, y0, x1, y1 = (round(v) for v in out.gt_boxes[0, 0].tolist())
    assert out.images[0, 0, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].min() == 255  # the pixels moved with it


def test_event_stopwatch_on_the_cpu_times_both_clocks():
    timings = Timings()
    with EventStopwatch(timings, torch.device("cpu")):
        sum(range(10_000))
    assert len(timings.wall) == len(timings.cpu) == 1 and timings.events == []
    assert timings.median("wall") >= 0
    timings.clear()
    assert timings.wall == timings.cpu == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (events)")
def test_event_stopwatch_on_cuda_times_without_a_sync():
    """The criterion's timer inside a training step must not add a host-device sync."""
    timings, matrix = Timings(), torch.randn(2048, 2048, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with EventStopwatch(timings, torch.device("cuda")):
            matrix @ matrix
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(timings.events) == 1 and timings.wall == []
    assert timings.median("wall") > 0 and timings.events == []  # read (and waited for) only now
