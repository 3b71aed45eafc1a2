"""Read image sizes for the dataset readers: headers only, or a full decode that finds unreadable files.

A truncated JPEG has a valid header; only decoding it shows the damage. ``data check`` and
``train`` therefore decode every image once before the first step (:func:`scan_images`), with the
decoder every other reader uses (:mod:`dynatss.data.decode`), so a bad file is found in seconds, not
hours into a run. Decoding a large dataset takes minutes, so each verdict is cached in
``<cache dir>/image-scan/<hash of the dataset root>.json``, keyed by the file's resolved path,
size, modification time and the pixel limit: a restart, a second run on the same data or a
``data check`` followed by ``train`` decodes only new or changed files. The cache directory is
``$DYNATSS_CACHE_DIR``, else ``$XDG_CACHE_HOME/dynatss``, else ``~/.cache/dynatss``; when it cannot
be written the scan simply is not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dynatss.atomic import atomic_write_text
from dynatss.data.decode import DEFAULT_MAX_PIXELS, ImageError, decode_image, read_header
from dynatss.errors import DynatssError

# Bump when the decoder's verdicts change, so old cache entries are not trusted.
SCAN_VERSION = 1
# Header reads and decodes are partly I/O bound; a few threads hide file-system latency.
_THREADS = 8
ImageSize = tuple[int, int]  # (width, height) as displayed


def cache_dir() -> Path:
    """Where dynatss caches derived data (the image scan)."""
    if os.environ.get("DYNATSS_CACHE_DIR"):
        return Path(os.environ["DYNATSS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dynatss"


def _in_parallel(function, paths: list[Path]) -> list:
    if len(paths) < 2 * _THREADS:
        return [function(path) for path in paths]
    with ThreadPoolExecutor(_THREADS) as pool:
        return list(pool.map(function, paths))


def header_sizes(paths: list[Path], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[ImageSize | str]:
    """(width, height) from each header, or the reason the file cannot be used (a string)."""

    def one(path: Path) -> ImageSize | str:
        try:
            header = read_header(path, max_pixels=max_pixels)
        except ImageError as error:
            return error.reason
        return header.width, header.height

    return _in_parallel(one, paths)


def _decoded_size(path: Path, max_pixels: int) -> ImageSize | str:
    try:
        image = decode_image(path, max_pixels=max_pixels)
    except ImageError as error:
        return error.reason
    return int(image.shape[-1]), int(image.shape[-2])


def _fingerprint(path: Path, max_pixels: int) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns, max_pixels, SCAN_VERSION]


def _cache_file(root: Path) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:20]
    return cache_dir() / "image-scan" / f"{digest}.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def scan_images(
    paths: list[Path], *, root: Path | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[ImageSize | str]:
    """Fully decode every image (cached per dataset ``root``); (width, height) or the reason it failed."""
    cache_path = _cache_file(root) if root is not None else None
    cache = _read_cache(cache_path) if cache_path is not None else {}
    keys = [str(path.resolve()) for path in paths]
    fingerprints = [_fingerprint(path, max_pixels) for path in paths]
    results: list[ImageSize | str | None] = []
    for key, fingerprint in zip(keys, fingerprints):
        entry = cache.get(key)
        hit = fingerprint is not None and isinstance(entry, list) and len(entry) == 2 and entry[0] == fingerprint
        results.append((tuple(entry[1]) if isinstance(entry[1], list) else entry[1]) if hit else None)
    missing = [i for i, result in enumerate(results) if result is None]
    decoded = _in_parallel(lambda path: _decoded_size(path, max_pixels), [paths[i] for i in missing])
    for i, result in zip(missing, decoded):
        results[i] = result
        if fingerprints[i] is not None:
            cache[keys[i]] = [fingerprints[i], list(result) if isinstance(result, tuple) else result]
    if cache_path is not None and missing:
        try:
            atomic_write_text(cache_path, json.dumps(cache))
        except DynatssError:
            pass  # an unwritable cache only costs time
    return results  # type: ignore[return-value]
