"""One image decoder for every input (issue 18, item 4): a PIL image of any mode, a numpy array of any
integer depth and the path of the same file give the same pixels, hence the same detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dynatss import Detector
from dynatss.api.inputs import iter_inputs
from dynatss.errors import DynatssError
from tests.robust.odd_images import gradient16


def _pixels(item) -> torch.Tensor:
    """The [3, H, W] uint8 image the detector sees for ``item`` (a path or an in-memory image)."""
    (found,) = iter_inputs([item])
    if found.error is not None:
        raise DynatssError(found.error)
    return found.image


# (mode, file suffix that stores the mode as it is)
MODES = [("I;16", ".png"), ("I", ".tif"), ("F", ".tif"), ("P", ".png"), ("LA", ".png"), ("CMYK", ".tif"),
         ("CMYK", ".jpg"), ("L", ".png"), ("1", ".png"), ("RGBA", ".png"), ("RGB", ".png")]  # fmt: skip


def _image_of_mode(mode: str) -> Image.Image:
    """A 24 x 36 image of ``mode`` whose pixels span the mode's whole range."""
    deep = gradient16(24, 36, 1)
    if mode == "I;16":
        return Image.fromarray(deep)
    if mode == "I":
        return Image.fromarray(deep.astype(np.int32))
    if mode == "F":
        return Image.fromarray((deep / 257.0).astype(np.float32))
    colours = np.stack([deep >> 8, np.flipud(deep >> 8), np.fliplr(deep >> 8)], axis=-1).astype(np.uint8)
    return Image.fromarray(colours).convert(mode)


@pytest.mark.parametrize(("mode", "suffix"), MODES)
def test_a_pil_image_of_any_mode_decodes_like_its_file(tmp_path, mode, suffix):
    path = tmp_path / f"image{suffix}"
    _image_of_mode(mode).save(path)
    opened = Image.open(path)
    assert opened.mode == mode  # the file holds the mode under test
    from_path = _pixels(path)
    from_pil = _pixels(opened)
    assert from_path.dtype == torch.uint8 and tuple(from_path.shape) == (3, 24, 36)
    assert torch.equal(from_pil, from_path), mode
    if mode in ("I;16", "I"):
        assert from_path.max() > 200  # the high byte, not a white or black image


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64, ">u2"])
def test_a_numpy_array_of_any_integer_depth_decodes_like_the_file(tmp_path, dtype):
    deep = gradient16(24, 36, 1)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    from_path = _pixels(tmp_path / "deep.png")
    from_array = _pixels(deep.astype(dtype))
    assert torch.equal(from_array, from_path)
    colour = np.stack([deep, deep // 2, deep // 3], axis=-1).astype(dtype)  # [H, W, 3] 16-bit RGB
    assert torch.equal(_pixels(colour), torch.from_numpy((colour.astype(np.int64) >> 8).astype(np.uint8)).permute(2, 0, 1))
    with pytest.raises(DynatssError, match="input 0: numpy images must be uint8"):
        _pixels(deep.astype(np.float32))


def test_a_16_bit_pil_image_gives_the_detections_of_its_file(tiny_run, tmp_path):
    deep = np.clip(gradient16(96, 128, 1).astype(np.int64) * 3 % 65536, 0, 65535).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(deep).save(path)
    detector = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", score_threshold=0.0)
    from_path, from_pil = detector.predict([path, Image.open(path)])
    assert len(from_path.scores) > 0
    torch.testing.assert_close(from_pil.boxes, from_path.boxes)
    torch.testing.assert_close(from_pil.scores, from_path.scores)
