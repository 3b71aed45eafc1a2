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

The cache is checked, never trusted blindly (issue 18): it holds only successes, as
``[fingerprint, [width, height]]``, and an entry is used only when its fingerprint is the file's as
it is now and its size is the one the file's header gives now (headers are read on every scan:
they are cheap, decoding is not). Anything else (another type, a size of 1 x 1, a damaged cache
file) is decoded again, and so is every file that failed before (there are few, and one may have
been repaired in place).
``use_cache=False`` decodes every file afresh (``data check`` by default: damage in place keeps the
size and time the cache knows a file by) and stores the fresh verdicts.
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

# Bump when the decoder's verdicts or the cache's layout change, so old entries are not trusted
# (2: successes only, checked against the header; issue 18).
SCAN_VERSION = 2
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


def _is_size(value: Any) -> bool:
    """A (width, height) as the scan stores it: two integers of at least one pixel."""
    return (
        isinstance(value, list) and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    )  # fmt: skip


def _cached_size(entry: Any, fingerprint: list[int] | None, header: ImageSize) -> ImageSize | None:
    """``header`` if ``entry`` says that this file, as it is now, decoded whole at that size; None
    (decode it again) for an entry of another file version, of another type or of another size."""
    valid = (
        fingerprint is not None and isinstance(entry, list) and len(entry) == 2 and entry[0] == fingerprint
        and _is_size(entry[1]) and tuple(entry[1]) == header
    )  # fmt: skip
    return header if valid else None


def scan_images(
    paths: list[Path],
    *,
    root: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_cache: bool = True,
) -> list[ImageSize | str]:
    """Fully decode every image (cached per dataset ``root``); (width, height) or the reason it failed.

    A file whose header cannot be read is not decoded (the header's reason is its verdict). With
    ``use_cache`` false every other file is decoded, and the successes are cached anyway.
    """
    cache_path = _cache_file(root) if root is not None else None
    cache = _read_cache(cache_path) if cache_path is not None else {}
    keys = [str(path.resolve()) for path in paths]
    fingerprints = [_fingerprint(path, max_pixels) for path in paths]
    results: list[ImageSize | str | None] = list(header_sizes(paths, max_pixels=max_pixels))
    missing = []
    for i, header in enumerate(results):
        if isinstance(header, str):
            continue
        cached = _cached_size(cache.get(keys[i]), fingerprints[i], header) if use_cache else None
        if cached is None:
            missing.append(i)
        results[i] = cached
    decoded = _in_parallel(lambda path: _decoded_size(path, max_pixels), [paths[i] for i in missing])
    for i, result in zip(missing, decoded):
        results[i] = result
        cache.pop(keys[i], None)
        if fingerprints[i] is not None and not isinstance(result, str):
            cache[keys[i]] = [fingerprints[i], list(result)]
    if cache_path is not None and missing:
        try:
            atomic_write_text(cache_path, json.dumps(cache))
        except DynatssError:
            pass  # an unwritable cache only costs time
    return results  # type: ignore[return-value]
