"""The one place dynatss opens an image file: header, pixel limit, decoding to 8-bit RGB.

Every reader of pixels goes through here (the dataset readers and ``data check``, the training and
test loaders, ``predict``, ``report``), so an image is accepted or refused, and looks, the same
everywhere:

- :func:`read_header` reads only the header (PIL): the size *as displayed* (EXIF orientation
  applied) and the format. It refuses files over the pixel limit before any pixel is decoded, so a
  small file claiming 100k x 100k pixels costs nothing.
- :func:`decode_image` returns uint8 RGB ``[3, H, W]`` whatever the file holds: 8- or 16-bit, gray,
  paletted, with or without alpha (dropped). JPEG is decoded by torchvision (libjpeg-turbo, the
  fastest); every other format by PIL, because torchvision 0.29's PNG decoder crashes the process
  (SIGSEGV in libpng) on a PNG whose pixel data is shorter than its header says, where PIL raises.
  PNG pixels are identical either way (lossless), and PIL was measured within ~10% of torchvision's
  PNG speed. 16-bit samples keep their high byte (``v >> 8``, also torchvision's
  ``to_dtype(uint8, scale=True)``) rather than wrapping around; float samples are clipped to 0..255.
- :func:`rgb_from_pil` and :func:`rgb_from_array` are that conversion for images already in memory
  (``Detector.predict`` takes PIL images and numpy arrays): a PIL image of any mode and a numpy
  array of any integer depth become exactly the pixels their file would (issue 18).

Failures raise :class:`ImageError`, a one-line :class:`DynatssError` naming the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.io import ImageReadMode, read_file
from torchvision.io import decode_image as _torchvision_decode
from torchvision.transforms.v2 import functional as F

from dynatss.config import DEFAULT_MAX_IMAGE_PIXELS
from dynatss.errors import DynatssError

# The default limit everywhere an image is opened (data.max_image_pixels; predict --max-pixels).
DEFAULT_MAX_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
# EXIF orientations 5-8 rotate by 90 degrees: the displayed image has width and height swapped.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
# Formats decoded by torchvision (libjpeg-turbo); PIL does the rest (see the module docstring).
_TORCHVISION_FORMATS = ("JPEG", "MPO")
# PIL modes of 16-bit integer samples (32-bit "I" holds them too) and of float samples.
_INT16_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_FLOAT_MODE = "F"
_MAX_16_BIT = 65535
# Channel counts of an in-memory array: gray, gray + alpha, RGB, RGBA.
_GRAY, _GRAY_ALPHA, _RGB, _RGBA = 1, 2, 3, 4


class ImageError(DynatssError):
    """An image that cannot be used: ``reason`` says why (``str()`` adds the path)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason.replace("\n", " ")
        super().__init__(f"{self.path}: {self.reason}")


@dataclass(frozen=True)
class ImageHeader:
    """What the header says: size as displayed (after EXIF orientation), PIL format and mode."""

    width: int
    height: int
    format: str
    mode: str


def _allow_pil_up_to(max_pixels: int) -> None:
    # PIL refuses images above 2x its MAX_IMAGE_PIXELS on its own; a larger configured limit must
    # reach it (PIL keeps this knob process-wide). Only ever raised, never lowered.
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _too_large(path: Path, width: int, height: int, max_pixels: int) -> ImageError:
    return ImageError(
        path,
        f"image of {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
        "(data.max_image_pixels, --max-pixels)",
    )


def read_header(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Header of ``path`` without decoding pixels; refuses unreadable, empty and oversized images."""
    path = Path(path)
    _allow_pil_up_to(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit decides
            with Image.open(path) as image:
                width, height = image.size
                # PIL looks for a PNG's EXIF past the pixel data (a full decode) unless a chunk before
                # them held it; torchvision only honours that early chunk too, so read EXIF only then.
                has_exif = image.format != "PNG" or "exif" in image.info
                orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1) if has_exif else 1
                fmt, mode = image.format or "", image.mode
    except FileNotFoundError:
        raise ImageError(path, "image file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image file") from None
    except Image.UnidentifiedImageError:
        raise ImageError(path, "unreadable image (not a format PIL or torchvision can read)") from None
    except Image.DecompressionBombError:
        raise ImageError(
            path, f"image exceeds the limit of {max_pixels:,} pixels (data.max_image_pixels, --max-pixels)"
        ) from None
    except (OSError, ValueError, SyntaxError, TypeError, EOFError) as error:
        raise ImageError(path, f"unreadable image ({error or type(error).__name__})") from None
    if width < 1 or height < 1:
        raise ImageError(path, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise _too_large(path, width, height, max_pixels)
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return ImageHeader(width=width, height=height, format=fmt, mode=mode)


def decode_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tensor:
    """Decode ``path`` to uint8 RGB ``[3, H, W]``, EXIF orientation applied (see the module docstring)."""
    path = Path(path)
    header = read_header(path, max_pixels=max_pixels)
    if header.format in _TORCHVISION_FORMATS:
        image = _decode_torchvision(path)
    else:
        image = _decode_pil(path)
    if tuple(image.shape[-2:]) != (header.height, header.width):
        raise ImageError(
            path, f"decoded {image.shape[-1]}x{image.shape[-2]} pixels, header says {header.width}x{header.height}"
        )
    return image


def _decode_torchvision(path: Path) -> Tensor:
    try:
        image = _torchvision_decode(read_file(str(path)), mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except (OSError, RuntimeError, ValueError) as error:
        # torchvision's messages start with "function, source.cpp:line, "; keep the readable end.
        message = (str(error).splitlines() or [type(error).__name__])[0].split(".cpp:")[-1].split(", ", 1)[-1]
        raise ImageError(path, f"cannot decode image ({message})") from None
    if image.dtype != torch.uint8:  # 16-bit PNG: scale 0..65535 to 0..255
        image = F.to_dtype(image, torch.uint8, scale=True)
    return image


def _decode_pil(path: Path) -> Tensor:
    try:
        with Image.open(path) as opened:
            # As read_header: a PNG's EXIF counts only when a chunk before the pixels holds it.
            early_exif = opened.format != "PNG" or "exif" in opened.info
            opened.load()
            image = ImageOps.exif_transpose(opened) if early_exif else opened
    except (OSError, ValueError, SyntaxError, TypeError, EOFError, Image.DecompressionBombError) as error:
        raise ImageError(path, f"cannot decode image ({error or type(error).__name__})") from None
    return rgb_from_pil(image, what=str(path))


def rgb_from_pil(image: Image.Image, *, what: str = "image") -> Tensor:
    """uint8 RGB ``[3, H, W]`` from a PIL image of any mode, as a file holding it is decoded.

    16-bit and 32-bit integer samples (``I;16*``, ``I``) keep their high byte, float samples (``F``)
    are clipped to 0..255; every other mode (palette, gray, gray + alpha, RGBA, CMYK, bilevel) is
    PIL's own conversion to RGB, alpha dropped. A lazily opened image that cannot be read (a
    truncated file) is a DynatssError naming ``what``.
    """
    try:
        if image.mode == _FLOAT_MODE:
            values = np.asarray(image)  # [H, W] float32
            return rgb_from_array(np.clip(np.nan_to_num(values), 0, 255).astype(np.uint8), what=what)
        if image.mode in _INT16_MODES:
            return rgb_from_array(np.asarray(image), what=what)  # [H, W] uint16 / int32
        return rgb_from_array(np.asarray(image.convert("RGB")), what=what)  # [H, W, 3] uint8
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise DynatssError(f"{what}: cannot read the PIL image ({error or type(error).__name__})") from None


def rgb_from_array(array: np.ndarray, *, what: str = "image") -> Tensor:
    """uint8 RGB ``[3, H, W]`` from a numpy ``[H, W]`` or ``[H, W, 1 | 2 | 3 | 4]`` array (RGB order).

    uint8 samples are taken as they are; wider integer samples are 16-bit ones (what PNG and TIFF
    hold, and PIL's ``I`` mode stores): clipped to 0..65535, high byte kept; bool is 0 or 255. Gray
    is repeated into three channels, a second or fourth (alpha) channel dropped. Anything else
    (floats, whose range is a guess, other shapes) is a DynatssError naming ``what``.
    """
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind in "iu" and array.dtype != np.uint8:
        array = (np.clip(array.astype(np.int64), 0, _MAX_16_BIT) >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise DynatssError(
            f"{what}: numpy images must be uint8 (0..255) or another integer type (16-bit samples), got {array.dtype}"
        )
    if array.ndim == 3 and array.shape[-1] in (_GRAY, _GRAY_ALPHA):
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], _RGB, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (_RGB, _RGBA):
        raise DynatssError(f"{what}: numpy images must be HxW, HxWx3 (RGB) or HxWx4, got shape {array.shape}")
    # [H, W, 3] -> [3, H, W], a writable copy (the array may be a view of a PIL image or the caller's)
    return torch.from_numpy(np.array(array[..., :_RGB], dtype=np.uint8)).permute(2, 0, 1)
