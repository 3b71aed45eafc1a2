"""Two CPU processes (torchrun, gloo) train like one process with the same total batch."""

import json
import os
import subprocess
import sys

import pytest

from dynatss.config import load_config
from dynatss.engine.distributed import per_rank_batch_size
from dynatss.engine.train import train
from dynatss.errors import DynatssError

from .tiny import tiny_overrides

ITERATIONS = 10


def losses(run_dir) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if line["type"] == "train"]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_total_batch(synthetic_root, tmp_path):
    # Frozen BatchNorm and GroupNorm in the head: splitting the batch changes no statistics.
    overrides = tiny_overrides(synthetic_root, tmp_path / "ddp", max_iter=ITERATIONS, batch_size=4)
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "dynatss", "train", str(config), *overrides],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    single = load_config(None, tiny_overrides(synthetic_root, tmp_path / "single", max_iter=ITERATIONS))
    train(single)

    one, two = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert len(one) == len(two) == ITERATIONS
    assert two == pytest.approx(one, rel=1e-3)
    assert one[0] != pytest.approx(one[-1], rel=1e-3)  # the weights did move: the test can tell


def test_total_batch_must_split_evenly_over_processes():
    assert per_rank_batch_size(16, 8) == 2
    with pytest.raises(DynatssError, match="not divisible"):
        per_rank_batch_size(6, 4)
