"""safetensors exports are whole or absent (issue 18, item 6): the config travels inside the file, the
.json beside it is written with it or not at all, and a pair that does not belong together is refused."""

from __future__ import annotations

import errno
import json
import os

import pytest
import safetensors.torch
import torch

from dynatss import Detector
from dynatss.engine.checkpoint import load_checkpoint, save_checkpoint
from dynatss.errors import DynatssError
from tests.robust.conftest import one_line_error

FULL_DISK = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _export(run_cli, weights, out):
    return run_cli(["export", "--weights", weights, "--format", "safetensors", "--out", out])


def _renamed_classes(tiny_run, path):
    """A checkpoint like the tiny run's whose classes have other names and whose weights differ."""
    state = load_checkpoint(tiny_run.checkpoint)
    state["meta"]["class_names"] = [f"other_{name}" for name in state["meta"]["class_names"]]
    state["config"]["inference"]["score_threshold"] = 0.25
    state["model"] = {key: value + 1 if value.is_floating_point() else value for key, value in state["model"].items()}
    return save_checkpoint(state, path)


def _pair(path):
    return {p.name: p.read_bytes() for p in (path, path.with_suffix(".json"))}


def _half_then_full_disk(write):
    """``write`` whose output stops half way with ENOSPC, as on a disk that fills up."""

    class HalfFile:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise FULL_DISK

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    return lambda *args, **kwargs: HalfFile(write(*args, **kwargs))


def _half_safetensors(real):
    def save(model, filename, *args, **kwargs):
        real(model, filename, *args, **kwargs)
        data = open(filename, "rb").read()
        open(filename, "wb").write(data[: len(data) // 2])
        raise FULL_DISK

    return save


@pytest.mark.parametrize("failing", ["weights", "description"])
def test_an_export_that_fails_half_way_leaves_the_old_pair(tiny_run, tmp_path, run_cli, monkeypatch, failing):
    out = tmp_path / "m.safetensors"
    assert _export(run_cli, tiny_run.checkpoint, out)[0] == 0
    before = _pair(out)
    other = _renamed_classes(tiny_run, tmp_path / "other.pth")
    if failing == "weights":
        monkeypatch.setattr(safetensors.torch, "save_model", _half_safetensors(safetensors.torch.save_model))
    else:
        monkeypatch.setattr(os, "fdopen", _half_then_full_disk(os.fdopen))
    code, _, err = _export(run_cli, other, out)
    monkeypatch.undo()
    assert code == 2
    one_line_error(err, "m.", "No space left on device")
    assert _pair(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors", "other.pth"]
    detector = Detector.from_checkpoint(out, device="cpu")
    assert detector.meta == tiny_run.meta


def test_a_pair_from_two_exports_is_refused(tiny_run, tmp_path, run_cli):
    assert _export(run_cli, tiny_run.checkpoint, tmp_path / "a.safetensors")[0] == 0
    assert _export(run_cli, _renamed_classes(tiny_run, tmp_path / "b.pth"), tmp_path / "b.safetensors")[0] == 0
    (tmp_path / "a.json").write_bytes((tmp_path / "b.json").read_bytes())  # new json, old weights
    with pytest.raises(DynatssError, match=r"a.json: describes another export than a.safetensors") as caught:
        Detector.from_checkpoint(tmp_path / "a.safetensors", device="cpu")
    assert "\n" not in str(caught.value)
    code, _, err = run_cli(["predict", "--weights", tmp_path / "a.safetensors", tmp_path, "--out", tmp_path / "p"])
    one_line_error(err, "a.json", "another export")
    (tmp_path / "a.json").write_text('{"config": ')  # half a description
    with pytest.raises(DynatssError, match=r"a.json: not a dynatss weights description"):
        Detector.from_checkpoint(tmp_path / "a.safetensors", device="cpu")


def test_a_safetensors_export_describes_itself(tiny_run, tmp_path, run_cli):
    out = tmp_path / "m.safetensors"
    assert _export(run_cli, tiny_run.checkpoint, out)[0] == 0
    description = json.loads(out.with_suffix(".json").read_text())
    out.with_suffix(".json").unlink()
    detector = Detector.from_checkpoint(out, device="cpu")  # the file alone is enough
    assert detector.meta == tiny_run.meta
    assert list(detector.meta.class_names) == description["meta"]["class_names"]


def test_an_export_of_an_earlier_version_still_loads_with_its_json(tiny_run, tmp_path):
    state = load_checkpoint(tiny_run.checkpoint)
    detector = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu")
    out = tmp_path / "old.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in state["model"].items()}, str(out))  # no metadata
    out.with_suffix(".json").write_text(json.dumps({"config": state["config"], "meta": state["meta"]}))
    loaded = Detector.from_checkpoint(out, device="cpu")
    assert loaded.meta == detector.meta
    for key, value in loaded.backend.model.state_dict().items():
        assert torch.equal(value, detector.backend.model.state_dict()[key]), key
