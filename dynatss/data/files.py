"""File helpers shared by the readers and writers: safe paths, atomic writes, links.

Image headers and decoding live in :mod:`dynatss.data.decode`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from dynatss.atomic import atomic_write_text

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


def resolves_inside(path: Path, root: Path) -> bool:
    """Whether ``path``, symbolic links followed, still lies inside ``root`` (links followed too).

    A dataset is untrusted: a link inside it that leads elsewhere (``img.jpg -> /etc/...``) is
    refused like a ``..`` in a file name.
    """
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symbolic link loop
        return False


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
