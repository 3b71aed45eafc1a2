import errno
import os
import random

import numpy as np
import pytest
import torch

from dynatss.config import Config, config_to_dict
from dynatss.data.records import DatasetMeta
from dynatss.engine import checkpoint as ckpt
from dynatss.engine.trained import load_trained
from dynatss.errors import DynatssError
from dynatss.model.build import build_detector


def small_state(iteration: int) -> dict:
    return {"model": {"weight": torch.full((3,), float(iteration))}, "iter": iteration}


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached Gaussian in the NumPy state
    state = {"model": {}, "rng": ckpt.capture_rng_state()}
    expected = (random.random(), np.random.normal(), torch.rand(2))
    ckpt.save_checkpoint(state, tmp_path / "c.pth")
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    ckpt.restore_rng_state(ckpt.load_checkpoint(tmp_path / "c.pth")["rng"])
    assert (random.random(), np.random.normal()) == expected[:2]
    assert torch.equal(torch.rand(2), expected[2])


def test_failure_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    ckpt.save_checkpoint(small_state(1), path)

    def crash_after_partial_write(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", crash_after_partial_write)
    with pytest.raises(DynatssError, match="last.pth: cannot write .No space left on device.") as error:
        ckpt.save_checkpoint(small_state(2), path)
    assert "\n" not in str(error.value)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["iter"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temporary file left


def test_periodic_checkpoints_keep_the_last_n_and_last_pth(tmp_path):
    for iteration in (10, 20, 30, 40):
        ckpt.save_periodic(small_state(iteration), tmp_path, keep_last=2)
    assert [i for i, _ in ckpt.periodic_checkpoints(tmp_path)] == [30, 40]
    assert ckpt.load_checkpoint(tmp_path / "last.pth")["iter"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth", "model_0000030.pth", "model_0000040.pth"]


def test_truncated_checkpoint_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "model.pth"
    ckpt.save_checkpoint(small_state(1), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DynatssError) as error:
        ckpt.load_checkpoint(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "content",
    [b"this is not a checkpoint", None],
    ids=["text-file", "pickle-with-code"],
)
def test_foreign_checkpoint_is_rejected(tmp_path, content):
    path = tmp_path / "foreign.pth"
    if content is None:  # a pickle that would run code if loaded without weights_only
        torch.save({"model": {}, "evil": Config}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(DynatssError, match="foreign.pth"):
        ckpt.load_checkpoint(path)


def test_a_tensor_file_without_model_entry_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"weight": torch.zeros(1)}, path)
    with pytest.raises(DynatssError, match="no 'model' entry"):
        ckpt.load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(DynatssError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "nope.pth")


def tiny_config() -> Config:
    config = Config()
    config.model.backbone = "mobilenet_v2"
    config.model.pretrained = None
    config.model.fpn_channels = 32
    config.model.head_channels = 64
    config.model.head_convs = 1
    config.model.max_level = 5
    config.model.num_classes = 2
    return config


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "pth-with-ema"])
def test_load_detector_rebuilds_the_saved_weights(tmp_path, fmt):
    config, meta = tiny_config(), DatasetMeta(class_names=("a", "b"), category_ids=(3, 7))
    torch.manual_seed(0)
    model = build_detector(config.model).eval()
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        path = ckpt.save_safetensors(model, tmp_path / "w.safetensors", config=config_to_dict(config), meta=meta)
    else:
        state = {"model": model.state_dict(), "ema": None, "config": config_to_dict(config),
                 "meta": ckpt.meta_to_dict(meta)}
        if fmt == "pth-with-ema":  # the EMA weights are the ones to predict with
            state["model"] = {k: torch.zeros_like(v) for k, v in expected.items()}
            state["ema"] = {"module." + k: v for k, v in expected.items()} | {"n_averaged": torch.tensor(3)}
        path = ckpt.save_checkpoint(state, tmp_path / "w.pth")
    loaded, loaded_config, loaded_meta = load_trained(path)
    assert loaded_meta == meta and loaded_config.model.num_classes == 2
    assert not loaded.training
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    images = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded(images).cls_logits, model(images).cls_logits)


def test_safetensors_without_sidecar_is_a_clear_error(tmp_path):
    model = build_detector(tiny_config().model)
    path = ckpt.save_safetensors(model, tmp_path / "w.safetensors")
    with pytest.raises(DynatssError, match="w.json"):
        load_trained(path)
