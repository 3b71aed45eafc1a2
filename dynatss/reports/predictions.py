"""What ``dynatss predict`` writes: drawn images and one detections.json; for a video, the drawn
video (``<name>.mp4``) and one JSON line per frame (``<name>.jsonl``).

Results arrive one at a time (``Detector.stream``), so a long video is never held in memory. A
result with an error (an input that could not be read, ``errors="keep"``) is reported on one line
and listed under "failed" in detections.json; the other images are still written. Every file is
written atomically, and nothing is written into the folder that holds the inputs.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dynatss.api.result import Result
from dynatss.api.video import VideoWriter, video_info
from dynatss.atomic import atomic_path, atomic_write_bytes, atomic_write_text, check_writable_folder
from dynatss.draw.detections import encode_image
from dynatss.errors import DynatssError

DETECTIONS_FILE = "detections.json"
# Drawn images keep their format when it is one we can encode, else they become PNG.
ENCODED_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class PredictSummary:
    images: list[dict] = field(default_factory=list)  # one entry per image: file, output, size, detections
    videos: list[tuple[str, Path, Path, int]] = field(default_factory=list)  # (source, drawn video, lines, frames)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, one-line reason)
    detections_path: Path | None = None

    @property
    def detections(self) -> int:
        return sum(len(entry["detections"]) for entry in self.images)


def check_output_folder(out_dir: str | Path) -> Path:
    """Fail in one line, before any image is processed, if ``out_dir`` cannot be written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DynatssError(f"{out_dir}: --out is a file; give a folder for the drawn images and {DETECTIONS_FILE}")
    return check_writable_folder(out_dir, what="--out folder")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class _Video:
    """The drawn video and frame lines of one input video, written as its frames arrive."""

    def __init__(self, source: Path, out_dir: Path) -> None:
        self.video_path, self.lines_path = out_dir / f"{source.stem}.mp4", out_dir / f"{source.stem}.jsonl"
        fps, size = video_info(source)
        self._files = contextlib.ExitStack()  # both written atomically: renamed into place on close
        self.writer = VideoWriter(self._files.enter_context(atomic_path(self.video_path)), fps, size)
        self.lines: IO[str] = self._files.enter_context(atomic_path(self.lines_path)).open("w")
        self.frames = 0

    def add(self, result: Result) -> None:
        self.writer.write(result.draw())
        self.lines.write(json.dumps({"frame": result.frame, "time": result.time, "width": result.width,
                                     "height": result.height, "detections": result.detections()}) + "\n")
        self.frames += 1

    def close(self, failed: bool = False) -> None:
        """Finish both files; ``failed``: delete them instead (the temporaries are removed)."""
        try:
            self.writer.close(flush=not failed)
            self.lines.close()
        finally:
            if failed:
                with contextlib.suppress(RuntimeError):  # the stop's own error is the caller's to report
                    self._files.__exit__(RuntimeError, RuntimeError("prediction stopped"), None)
            else:
                self._files.close()


class PredictionWriter:
    """Writes results as they arrive into ``out_dir``; :meth:`finish` writes detections.json."""

    def __init__(self, out_dir: Path, *, score_threshold: float, class_names: tuple[str, ...],
                 warn: Callable[[str], None] = _warn) -> None:
        self.out_dir = check_output_folder(out_dir).resolve()
        self.score_threshold = score_threshold
        self.class_names = class_names
        self.warn = warn
        self.summary = PredictSummary()
        self._used: set[str] = {DETECTIONS_FILE}
        self._video: tuple[str, _Video] | None = None

    def add(self, result: Result) -> None:
        if result.source is not None and Path(result.source).resolve().parent == self.out_dir:
            raise DynatssError(f"{self.out_dir}: --out must not be the folder that holds the inputs")
        if result.frame is None or result.source != (self._video[0] if self._video else None):
            self._close_video()
        if result.error is not None:
            self.summary.failures.append((str(result.source), result.error))
            self.warn(result.error)
        elif result.frame is not None:
            if self._video is None:
                self._video = (result.source, _Video(Path(result.source), self.out_dir))
            self._video[1].add(result)
        else:
            self._add_image(result)

    def _add_image(self, result: Result) -> None:
        source = Path(result.source) if result.source else Path(f"image_{len(self.summary.images)}.png")
        output = self._output_name(source)
        atomic_write_bytes(output, encode_image(result.draw(), output.suffix))
        self.summary.images.append({"file": str(result.source), "output": output.name, "width": result.width,
                                    "height": result.height, "detections": result.detections()})

    def _output_name(self, path: Path) -> Path:
        """``out_dir / name``, with ``_1``, ``_2`` ... added where two inputs share a name."""
        suffix = path.suffix if path.suffix.lower() in ENCODED_SUFFIXES else ".png"
        name, counter = path.stem + suffix, 0
        while name.lower() in self._used:
            counter += 1
            name = f"{path.stem}_{counter}{suffix}"
        self._used.add(name.lower())
        return self.out_dir / name

    def _close_video(self, failed: bool = False) -> None:
        if self._video is not None:
            source, video = self._video
            video.close(failed)
            if not failed:
                self.summary.videos.append((source, video.video_path, video.lines_path, video.frames))
            self._video = None

    def finish(self) -> PredictSummary:
        self._close_video()
        document = {
            "images": self.summary.images,
            "failed": [{"file": file, "error": reason} for file, reason in self.summary.failures],
            "class_names": list(self.class_names),
            "score_threshold": self.score_threshold,
        }
        self.summary.detections_path = atomic_write_text(self.out_dir / DETECTIONS_FILE,
                                                         json.dumps(document, indent=1) + "\n")
        return self.summary

    def abort(self) -> None:
        self._close_video(failed=True)


def write_predictions(results: Iterable[Result], out_dir: Path, *, score_threshold: float,
                      class_names: tuple[str, ...], warn: Callable[[str], None] = _warn) -> PredictSummary:
    """Write every result of ``results`` (a stream) into ``out_dir``; see the module docstring."""
    writer = PredictionWriter(out_dir, score_threshold=score_threshold, class_names=class_names, warn=warn)
    try:
        for result in results:
            writer.add(result)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()
