"""Predict on a video file: the annotated video (``<name>.mp4``) and one JSON line per frame
(``<name>.jsonl``: frame index, time in seconds, size, detections as in detections.json).

Decoding and encoding are PyAV's (FFmpeg), an optional dependency: ``pip install 'dynatss[video]'``.
Frames go through ``Detector.predict`` in batches, so a checkpoint and an ONNX export behave alike.
Both outputs are written atomically: an interrupted run leaves no half-written file behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from dynatss.atomic import atomic_path
from dynatss.errors import DynatssError

if TYPE_CHECKING:
    from dynatss.api import Detector

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
# H.264 where FFmpeg has an encoder for it (PyAV's wheels do), else FFmpeg's built-in MPEG-4 part 2.
ENCODERS = ("libx264", "mpeg4")
FALLBACK_FPS = Fraction(25)
# yuv420p (what players expect) stores colour at half resolution: width and height must be even.
CHROMA_STEP = 2


@dataclass(frozen=True)
class VideoPrediction:
    source: Path
    video_path: Path
    frames_path: Path
    frames: int
    detections: int


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def import_av() -> Any:
    """PyAV, or a one-line DynatssError saying how to install it."""
    try:
        import av
    except ImportError:
        raise DynatssError("predicting on videos needs PyAV: pip install 'dynatss[video]' (or pip install av)") from None
    return av


def predict_video(
    detector: Detector,
    path: str | Path,
    out_dir: str | Path,
    *,
    score_threshold: float | None = None,
    batch_size: int = 8,
) -> VideoPrediction:
    """Detect in every frame of ``path``; write ``out_dir/<stem>.mp4`` and ``out_dir/<stem>.jsonl``."""
    av = import_av()
    path, out_dir = Path(path), Path(out_dir)
    if not path.is_file():
        raise DynatssError(f"{path}: no such file")
    video_path, frames_path = out_dir / f"{path.stem}.mp4", out_dir / f"{path.stem}.jsonl"
    if video_path.resolve() == path.resolve():
        raise DynatssError(f"{out_dir}: --out must not be the folder that holds the input video")
    try:
        source = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise DynatssError(f"{path}: not a readable video ({error})".replace("\n", " ")) from None
    with source:
        if not source.streams.video:
            raise DynatssError(f"{path}: holds no video stream")
        stream = source.streams.video[0]
        fps = stream.average_rate or FALLBACK_FPS
        size = (stream.width, stream.height)
        with atomic_path(video_path) as video_tmp, atomic_path(frames_path) as frames_tmp:
            with _Encoder(av, video_tmp, fps, size) as encoder, frames_tmp.open("w") as lines:
                counts = _run(detector, source.decode(stream), size, encoder, lines, score_threshold, batch_size)
    return VideoPrediction(path, video_path, frames_path, *counts)


def _run(detector, frames, size, encoder, lines, score_threshold, batch_size) -> tuple[int, int]:
    """Detect, draw and write batch by batch; returns (frames, detections)."""
    width, height = size
    pending: list[tuple[int, float | None, Any]] = []
    total_frames = total_detections = 0
    for index, frame in enumerate(frames):
        # Frames keep the stream's size (a stream may change size mid-way; the encoder cannot).
        pending.append((index, frame.time, frame.reformat(width=width, height=height, format="rgb24").to_ndarray()))
        if len(pending) < batch_size:
            continue
        total_detections += _flush(detector, pending, encoder, lines, score_threshold)
        total_frames += len(pending)
        pending = []
    if pending:
        total_detections += _flush(detector, pending, encoder, lines, score_threshold)
        total_frames += len(pending)
    return total_frames, total_detections


def _flush(detector, pending, encoder, lines, score_threshold) -> int:
    results = detector.predict([array for _, _, array in pending], score_threshold=score_threshold)
    for (index, time, _), result in zip(pending, results):
        encoder.write(result.draw())
        record = {"frame": index, "time": time, "width": result.width, "height": result.height,
                  "detections": result.detections()}
        lines.write(json.dumps(record) + "\n")
    return sum(len(result) for result in results)


class _Encoder:
    """An MP4 writer for ``[3, H, W]`` uint8 frames (cropped to even sizes for yuv420p)."""

    def __init__(self, av, path: Path, fps: Fraction, size: tuple[int, int]) -> None:
        self.av = av
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

    def __enter__(self) -> _Encoder:
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if exc_info[0] is None:
                self.container.mux(self.stream.encode(None))  # flush the encoder's delayed frames
        finally:
            self.container.close()


def _has_encoder(av, name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        return False
    return True
