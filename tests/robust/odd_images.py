"""Image files that break naive decoders: 16-bit PNGs, extreme aspect ratios, truncated JPEGs, bombs.

PNGs are written chunk by chunk with zlib (PIL cannot write 16-bit RGB), so each file is exactly
what its name says.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type (gray, RGB)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG of ``pixels`` [H, W] or [H, W, 3], uint8 or uint16 (big-endian samples, as PNG wants)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.astype(">u2" if depth == 16 else "u1").reshape(height, -1).view(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, depth, _COLOR_TYPES[channels], 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` gray pixels but holds almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def gradient16(height: int, width: int, channels: int = 3) -> np.ndarray:
    """uint16 [H, W, C] spanning 0..65535, so a wrong conversion to 8 bits cannot go unnoticed."""
    ramp = np.linspace(0, 65535, height * width, dtype=np.float64).reshape(height, width)
    planes = [np.rint(ramp * (c + 1) / channels).astype(np.uint16) for c in range(channels)]
    return np.stack(planes, axis=-1) if channels > 1 else planes[0]


def write_png16(path: Path, height: int, width: int, channels: int = 3) -> np.ndarray:
    pixels = gradient16(height, width, channels)
    path.write_bytes(png_bytes(pixels))
    return pixels


def write_truncated_jpeg(path: Path, height: int = 64, width: int = 48) -> None:
    """A JPEG cut in half: its header is fine, decoding it fails."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
