"""Videos through PyAV (FFmpeg), an optional dependency (``pip install 'dynatss[video]'``): the
frames of a file as ``[3, H, W]`` uint8 images (``Detector.predict`` / ``Detector.stream`` read them
one by one), and an MP4 writer for drawn frames (``dynatss predict`` writes ``<name>.mp4`` with them).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dynatss.errors import DynatssError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
# H.264 where FFmpeg has an encoder for it (PyAV's wheels do), else FFmpeg's built-in MPEG-4 part 2.
ENCODERS = ("libx264", "mpeg4")
FALLBACK_FPS = Fraction(25)
# yuv420p (what players expect) stores colour at half resolution: width and height must be even.
CHROMA_STEP = 2


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def import_av() -> Any:
    """PyAV, or a one-line DynatssError saying how to install it."""
    try:
        import av
    except ImportError:
        raise DynatssError("predicting on videos needs PyAV: pip install 'dynatss[video]' (or pip install av)") from None
    return av


def video_info(path: str | Path) -> tuple[Fraction, tuple[int, int]]:
    """(frames per second, (width, height)) of the first video stream of ``path``."""
    av = import_av()
    with _open(av, Path(path)) as source:
        stream = source.streams.video[0]
        return stream.average_rate or FALLBACK_FPS, (stream.width, stream.height)


def read_frames(path: str | Path) -> Iterator[tuple[int, float | None, Tensor]]:
    """(frame index, time in seconds, ``[3, H, W]`` uint8 RGB) of every frame, one at a time.
    Frames keep the stream's size (a stream may change size mid-way; an encoder cannot)."""
    av = import_av()
    with _open(av, Path(path)) as source:
        stream = source.streams.video[0]
        width, height = stream.width, stream.height
        for index, frame in enumerate(source.decode(stream)):
            array = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()  # [H, W, 3]
            yield index, frame.time, torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _open(av, path: Path):
    if not path.is_file():
        raise DynatssError(f"{path}: no such file")
    try:
        source = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise DynatssError(f"{path}: not a readable video ({error})".replace("\n", " ")) from None
    if not source.streams.video:
        source.close()
        raise DynatssError(f"{path}: holds no video stream")
    return source


class VideoWriter:
    """An MP4 writer for ``[3, H, W]`` uint8 frames (cropped to even sizes for yuv420p)."""

    def __init__(self, path: Path, fps: Fraction, size: tuple[int, int]) -> None:
        av = self.av = import_av()
        self.width, self.height = (side - side % CHROMA_STEP for side in size)
        if self.width == 0 or self.height == 0:
            raise DynatssError(f"video frames of {size[0]}x{size[1]} pixels are too small to encode")
        codec = next(name for name in ENCODERS if _has_encoder(av, name))
        self.container = av.open(str(path), mode="w", format="mp4")
        self.stream = self.container.add_stream(codec, rate=fps)
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"

    def write(self, image: Tensor) -> None:
        array = image[:, : self.height, : self.width].permute(1, 2, 0).contiguous().numpy()  # [H, W, 3]
        frame = self.av.VideoFrame.from_ndarray(array, format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def close(self, *, flush: bool = True) -> None:
        try:
            if flush:
                self.container.mux(self.stream.encode(None))  # the encoder's delayed frames
        finally:
            self.container.close()


def _has_encoder(av, name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        return False
    return True
