"""One process per run directory (issue 18, item 2), and SIGTERM that says so (item 9).

A real ``dynatss train`` runs in a subprocess, slowed down; while it runs, every other ``train``
into its directory is refused naming it, and ``report`` and ``eval`` read it undisturbed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dynatss.errors import DynatssError
from tests.engine.test_resume import LAUNCHER
from tests.engine.tiny import make_synthetic, tiny_overrides
from tests.robust.conftest import one_line_error

LOCK_FILE = "train.lock"
# Holds the run directory's lock the way train does, then sleeps until killed.
HOLDER = """
import sys, time
from dynatss.engine.run_lock import RunDirLock
with RunDirLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


# `dynatss train` whose work is a long sleep: SIGTERM arrives while a command runs.
SLEEPER = """
import sys, time
import dynatss.cli.train_cmd as train_cmd
def sleep(args):
    print("running", flush=True)
    time.sleep(600)
train_cmd.run_train = sleep
from dynatss.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _wait_for(condition, process, what, seconds=180):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the process ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _start_train(settings):
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "train", "/dev/null", *settings],
        env={**os.environ, "OMP_NUM_THREADS": "1", "DYNATSS_TEST_STEP_SLEEP": "0.3"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_a_live_run_refuses_other_trains_and_stops_on_sigterm_in_one_line(tmp_path, run_cli):
    data, run = make_synthetic(tmp_path / "data"), tmp_path / "run"
    settings = [*tiny_overrides(data, run, max_iter=500), "train.checkpoint_period=1", "train.keep_last=1"]
    started = [_start_train(settings), _start_train(settings)]  # together, into a directory not there yet
    try:
        deadline = time.monotonic() + 180
        while all(process.poll() is None for process in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        refused = next(process for process in started if process.poll() is not None)
        live = next(process for process in started if process is not refused)
        _, err = refused.communicate()
        assert refused.returncode == 2 and "Traceback" not in err
        assert f"pid {live.pid}" in err or "another process started a training run here" in err, err
        _wait_for((run / "checkpoints" / "last.pth").exists, live, "the first checkpoint")
        config = (run / "config.yaml").read_bytes()
        for flag in ([], ["--resume"], ["--overwrite"]):
            code, _, err = run_cli(["train", "/dev/null", *settings, *flag])
            assert code == 2
            one_line_error(err, str(run), "in use by another training process", f"pid {live.pid}", "dynatss train")
        assert (run / "config.yaml").read_bytes() == config and (run / "checkpoints" / "last.pth").exists()
        code, _, err = run_cli(["report", run, "--images", "1"])  # readers take no lock
        assert code == 0, err
        code, _, err = run_cli(["eval", "--weights", run / "checkpoints" / "last.pth", "--output", tmp_path / "d.json"])
        assert code == 0, err
        assert live.poll() is None
        live.send_signal(signal.SIGTERM)
        _, err = live.communicate(timeout=120)
    finally:
        for process in started:
            process.kill()
    assert live.returncode == 128 + signal.SIGTERM, err  # the live run's stderr, to tell a flake from a bug
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and not line.startswith("train:")]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("dynatss train: terminated (SIGTERM)")
    assert not (run / LOCK_FILE).exists()
    iters = [json.loads(line)["iter"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert iters == list(range(1, len(iters) + 1))  # one writer: no interleaved lines


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    from dynatss.engine.run_lock import RunDirLock

    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DynatssError, match=rf"in use by another training process \(pid {holder.pid} on host"):
            RunDirLock(run).hold(create=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / LOCK_FILE).exists()  # left by the killed holder: the OS released its lock
    with RunDirLock(run) as lock:
        assert lock.held
        description = json.loads((run / LOCK_FILE).read_text())
        assert description["pid"] == os.getpid()
    assert not (run / LOCK_FILE).exists()


def test_a_run_directory_is_locked_when_it_is_created(tmp_path):
    from dynatss.engine.run_lock import LOCK_FILE as NAME
    from dynatss.engine.run_lock import RunDirLock

    assert NAME == LOCK_FILE
    run = tmp_path / "new" / "run"
    with RunDirLock(run) as lock:
        assert not lock.held and not run.exists()  # nothing written before the checks
        lock.hold(create=True)
        assert lock.held and (run / LOCK_FILE).exists()
        with pytest.raises(DynatssError, match="in use by another training process"):
            RunDirLock(run).hold(create=True)
    late = tmp_path / "late"
    with RunDirLock(late) as lock:  # did not exist at the checks; a run appeared before it was created
        late.mkdir()
        (late / "config.yaml").write_text("model: {}\n")
        with pytest.raises(DynatssError, match="another process started a training run here"):
            lock.hold(create=True)
        assert not lock.held and not (late / LOCK_FILE).exists()
    assert RunDirLock(run, enabled=False).__enter__().held is False  # torchrun ranks other than 0


def test_sigterm_ends_a_command_with_one_line_and_status_143():
    process = subprocess.Popen([sys.executable, "-c", SLEEPER, "train", "cfg.yaml"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stdout.readline().strip() == "running"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    one_line_error(err, "dynatss train: terminated (SIGTERM)", "continue with --resume")
