"""Checkpoints and outputs (issue 11): malformed checkpoints, output locations checked first, one
atomic writer with the normal file mode, one device rule."""

from __future__ import annotations

import collections
import os
import signal
import stat

import pytest
import torch

from dynatss import atomic
from dynatss.atomic import atomic_path, atomic_write_text, check_writable_folder, default_file_mode
from dynatss.engine.build import resolve_device
from dynatss.engine.checkpoint import save_checkpoint, state_dict_mismatch
from dynatss.engine.trained import load_trained
from dynatss.errors import DynatssError, Terminated, raise_on_sigterm
from tests.robust.conftest import one_line_error


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_files_get_the_mode_open_would_give(tmp_path, mask):
    previous = os.umask(mask)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.bin") as temporary:  # a writer that creates the file itself
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o666 & ~mask
    assert default_file_mode() == 0o666 & ~previous


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    target = atomic_write_text(tmp_path / "detections.json", "previous")
    full = tmp_path / ".full"
    os.symlink("/dev/full", full)  # every write to it fails with ENOSPC
    monkeypatch.setattr(atomic, "temporary_path", lambda path: full)
    with pytest.raises(DynatssError) as error:
        atomic_write_text(target, "new" * 1000)
    assert str(error.value) == f"{target}: cannot write (No space left on device)"
    assert target.read_text() == "previous"

    monkeypatch.setattr(atomic, "temporary_path", lambda path: path.with_name(".tmp-by-name"))
    monkeypatch.setattr(atomic, "_disk_is_full", lambda folder: True)
    with pytest.raises(DynatssError, match="cannot write .No space left on device."):
        with atomic_path(target):  # torch.save(path) reports ENOSPC as "unexpected pos ..."
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert target.read_text() == "previous" and not (tmp_path / ".tmp-by-name").exists()


@pytest.mark.parametrize("signum, stop", [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_stop_during_a_checkpoint_write_waits_for_the_whole_file(tmp_path, signum, stop):
    """SIGTERM inside torch.save once broke torch's zip writer ("unexpected pos"), a traceback in
    place of the one-line stop (the flaky SIGTERM test of test_run_lock); the stop now waits."""
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    state = {"iter": 7, "model": {"weight": torch.arange(100_000, dtype=torch.float32)}}

    class StopsMidWrite:  # pickled by torch.save: the signal arrives inside the write
        def __reduce__(self):
            os.kill(os.getpid(), signum)
            return (collections.OrderedDict, ())  # a global weights_only loads

    raise_on_sigterm()
    installed = {number: signal.getsignal(number) for number in previous}
    try:
        with pytest.raises(stop):
            save_checkpoint({**state, "marker": StopsMidWrite()}, tmp_path / "last.pth")
        assert {number: signal.getsignal(number) for number in previous} == installed  # the handlers are back
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    saved = torch.load(tmp_path / "last.pth", weights_only=True)
    assert saved["iter"] == 7 and torch.equal(saved["model"]["weight"], state["model"]["weight"])
    assert [path.name for path in tmp_path.iterdir()] == ["last.pth"]  # no temporary left


def test_output_locations_are_checked_before_any_work(tmp_path, run_cli, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DynatssError, match="is a file, not a folder"):
        check_writable_folder(a_file / "sub")
    code, _, err = run_cli(["eval", "--weights", tmp_path / "none.pth", "--out", a_file])
    one_line_error(err, "--out", "is a file")  # before the checkpoint or data are even read
    code, _, err = run_cli(["predict", "--weights", tmp_path / "none.pth", a_file, "--out", a_file])
    one_line_error(err, "--out is a file")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only folder, even for root
    code, _, err = run_cli(["predict", "--weights", tmp_path / "none.pth", a_file, "--out", tmp_path / "out"])
    one_line_error(err, "not writable")
    code, _, err = run_cli(["train", "/dev/null", f"train.output_dir={tmp_path / 'run'}"])
    one_line_error(err, "not writable", "train.output_dir")
    assert code == 2 and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "tweak, message",
    [
        (lambda c: c.update(model=[1, 2]), "malformed 'model' entry"),
        (lambda c: c.update(config=["a"]), "malformed 'config' entry"),
        (lambda c: c.update(meta={"class_names": "abc"}), "malformed 'meta' entry"),
        (lambda c: c.update(meta={"class_names": ["a"], "category_ids": [1]}),  # fewer classes than the weights
         "weights do not match the model (2 tensors of another shape, e.g. head.cls_logits.weight: file [4,"),
        (lambda c: c["config"]["solver"].update(base_lr=-1.0), "saved config: solver.base_lr = -1.0"),
        (lambda c: c["model"].pop(next(iter(c["model"]))), "weights do not match the model (1 missing"),
    ],
)
def test_checkpoints_of_the_wrong_structure_are_one_line_errors(tiny_run, tmp_path, run_cli, tweak, message):
    checkpoint = torch.load(tiny_run.checkpoint, weights_only=True)
    tweak(checkpoint)
    path = tmp_path / "odd.pth"
    torch.save(checkpoint, path)
    with pytest.raises(DynatssError, match="odd.pth: ") as error:
        load_trained(path)
    assert message in str(error.value) and "\n" not in str(error.value)
    code, _, err = run_cli(["predict", "--weights", path, tmp_path, "--out", tmp_path / "out"])
    assert code == 2
    one_line_error(err, "odd.pth", message)


def test_state_dict_mismatch_names_a_key_and_both_shapes():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4))
    state = {"0.weight": torch.zeros(5, 3), "0.bias": torch.zeros(4), "extra": torch.zeros(1)}
    assert state_dict_mismatch(model, state) == (
        "1 tensor of another shape, e.g. 0.weight: file [5, 3], model [4, 3]; 1 unexpected, e.g. extra"
    )
    assert state_dict_mismatch(model, model.state_dict()) is None


def test_export_refuses_bad_outputs_before_loading(tiny_run, tmp_path, run_cli):
    weights = tiny_run.checkpoint
    code, _, err = run_cli(["export", "--weights", weights, "--format", "safetensors", "--out", tmp_path / "m.json"])
    one_line_error(err, "m.json", "must end in .safetensors")
    assert not (tmp_path / "m.json").exists()
    code, _, err = run_cli(["export", "--weights", weights, "--out", tmp_path])
    one_line_error(err, "is a folder")
    code = run_cli(["export", "--weights", weights, "--format", "safetensors", "--out", tmp_path / "m.safetensors"])[0]
    assert code == 0
    for name in ("m.safetensors", "m.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == default_file_mode()
    code, _, err = run_cli(["export", "--weights", tmp_path / "m.safetensors", "--format", "onnx",
                            "--out", tmp_path / "m.json"])
    one_line_error(err, "m.json", "overwrite its own weights")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
@pytest.mark.parametrize("device", ["cuda", "gpu", "cuda:1"])
def test_asking_for_a_gpu_without_one_is_one_line(tiny_run, tmp_path, run_cli, device):
    code, _, err = run_cli(["predict", "--weights", tiny_run.checkpoint, tmp_path, "--out", tmp_path / "o",
                            "--device", device])
    assert code == 2
    one_line_error(err, f"--device = '{device}': no CUDA GPU is available")
    with pytest.raises(DynatssError, match=f"train.device = '{device}': no CUDA GPU"):
        resolve_device(device)


def test_every_command_shares_the_device_rule():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    with pytest.raises(DynatssError, match=r"--device = 'mps': must be 'auto', 'cpu'"):
        resolve_device("mps", setting="--device")
    from dynatss.cli.main import build_parser

    parser = build_parser()
    for command in (["predict", "x", "--weights", "w", "--out", "o"], ["report", "r"]):
        assert parser.parse_args(command).device == "auto"
