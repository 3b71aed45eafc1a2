"""File helpers shared by the readers and writers: safe paths, cheap image headers, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from PIL import Image

from dynatss.atomic import atomic_write_text

# EXIF orientations 5-8 rotate by 90 degrees: the displayed image has width and height swapped.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
# Header reads are I/O bound; a few threads hide file-system latency on large datasets.
_HEADER_THREADS = 8
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def safe_join(root: Path, name: str) -> Path | None:
    """``root / name`` if ``name`` is a relative path that stays inside ``root``, else None.

    Annotation files are untrusted: an absolute path or one with ``..`` is never read.
    """
    if not name or PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute():
        return None
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if any(part == ".." for part in parts):
        return None
    return root.joinpath(*parts)


def image_size(path: Path, *, verify: bool = False) -> tuple[int, int]:
    """(width, height) of the image as displayed (after EXIF orientation), from its header.

    With ``verify`` the pixels are fully decoded too (catches truncated files). Raises OSError or
    ValueError (PIL's errors) for unreadable files.
    """
    with Image.open(path) as image:
        width, height = image.size
        # PIL looks for a PNG's EXIF past the pixel data (a full decode) unless a chunk before them
        # held it; torchvision only honours that early chunk too, so only read EXIF when present.
        has_exif = image.format != "PNG" or "exif" in image.info
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1) if has_exif else 1
        if verify:
            image.load()
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return width, height


def image_sizes(paths: list[Path], *, verify: bool = False) -> list[tuple[int, int] | str]:
    """:func:`image_size` for many files in parallel; a string (the error) for unreadable ones."""

    def one(path: Path) -> tuple[int, int] | str:
        try:
            return image_size(path, verify=verify)
        except FileNotFoundError:
            return "image file not found"
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            return f"unreadable image ({error})".replace("\n", " ")

    if len(paths) < 2 * _HEADER_THREADS:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(_HEADER_THREADS) as pool:
        return list(pool.map(one, paths))


def write_text_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data))


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it. Existing ``dst`` is replaced."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        if dst.samefile(src):
            return
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
