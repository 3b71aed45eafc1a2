"""Tiny model configs shared by the model tests (random init, small head: CPU-fast)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dynatss.config import ModelConfig


def _tiny_config(**overrides) -> ModelConfig:
    base = ModelConfig(backbone="resnet18", pretrained=None, head_channels=64, fpn_channels=32, num_classes=3)
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def tiny_config():
    """Factory: a small random-init ModelConfig with the given overrides."""
    return _tiny_config



@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache for the test (torch.hub.get_dir() returns it)."""
    path = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(path))
    return path
