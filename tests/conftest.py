"""Suite-wide test settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test: `make test` runs 2 pytest workers on 2 cores, and more
    threads per worker only spin against each other."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory):
    """The image-scan cache (dynatss.data.scan) of the tests lives in a temporary folder, not ~/.cache;
    subprocesses inherit it through the environment."""
    patch = pytest.MonkeyPatch()
    patch.setenv("DYNATSS_CACHE_DIR", str(tmp_path_factory.mktemp("dynatss-cache")))
    yield
    patch.undo()
