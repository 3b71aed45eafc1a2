"""--resume after SIGKILL ends with exactly the weights of an uninterrupted run (CPU, same seed)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from dynatss.engine import checkpoint as ckpt

from .tiny import tiny_overrides

MAX_ITER = 10
# The killed run sleeps after each step so that the kill surely lands mid-run, after a checkpoint.
LAUNCHER = """
import os, sys, time
import dynatss.engine.train as train
step = train._step
def slow_step(*args, **kwargs):
    values = step(*args, **kwargs)
    time.sleep(float(os.environ.get("DYNATSS_TEST_STEP_SLEEP", "0")))
    return values
train._step = slow_step
from dynatss.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def command(data_root, run_dir, *extra) -> list[str]:
    config = run_dir.parent / "empty.yaml"
    config.write_text("{}\n")
    overrides = tiny_overrides(data_root, run_dir, max_iter=MAX_ITER) + [
        "train.checkpoint_period=3", "train.keep_last=1", "train.deterministic=true",
    ]  # fmt: skip
    return [sys.executable, "-c", LAUNCHER, "train", str(config), *overrides, *extra]


def environment(sleep: float) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DYNATSS_TEST_STEP_SLEEP": str(sleep)}


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    state = ckpt.load_checkpoint(run_dir / "checkpoints" / "last.pth")
    assert state["iter"] == MAX_ITER
    return state["model"]


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(synthetic_root, tmp_path):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(command(synthetic_root, reference_dir), env=environment(0), check=True, capture_output=True)

    process = subprocess.Popen(
        command(synthetic_root, killed_dir), env=environment(0.5),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    first_checkpoint = killed_dir / "checkpoints" / "model_0000003.pth"
    deadline = time.monotonic() + 120
    while not first_checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)  # now somewhere inside iteration 4
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = ckpt.load_checkpoint(killed_dir / "checkpoints" / "last.pth")["iter"]
    assert 3 <= killed_at < MAX_ITER

    resumed = subprocess.run(
        command(synthetic_root, killed_dir, "--resume"), env=environment(0), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"at iteration {killed_at}" in resumed.stdout

    reference, result = final_weights(reference_dir), final_weights(killed_dir)
    assert reference.keys() == result.keys()
    different = [key for key in reference if not torch.equal(reference[key], result[key])]
    assert different == []
    # the metrics log holds each iteration once, as if never interrupted
    iters = [json.loads(line)["iter"] for line in (killed_dir / "metrics.jsonl").read_text().splitlines()]
    assert iters == list(range(1, MAX_ITER + 1))
