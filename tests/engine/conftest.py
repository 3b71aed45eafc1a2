from __future__ import annotations

from pathlib import Path

import pytest

from .tiny import make_synthetic


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic COCO dataset, generated once per test session (worker)."""
    return make_synthetic(tmp_path_factory.mktemp("synthetic"))
