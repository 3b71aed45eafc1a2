"""`predict` on a video: an annotated video and one JSON line per frame (PyAV, optional)."""

from __future__ import annotations

import json
import sys

import av
import numpy as np
import pytest
from dynatss.tools.video import predict_video

from dynatss import Detector
from dynatss.cli.main import main
from dynatss.errors import DynatssError

FRAMES, WIDTH, HEIGHT = 5, 96, 64


@pytest.fixture
def video(tmp_path):
    """A tiny MPEG-4 clip: a bright square moving over a dark background."""
    path = tmp_path / "clip.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(FRAMES):
            array = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
            array[10:40, 8 + 10 * index : 38 + 10 * index] = (220, 200, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def _decoded_frames(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_predict_video_writes_the_drawn_video_and_frame_lines(tiny_run, video, tmp_path):
    detector = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", score_threshold=0.0)
    written = predict_video(detector, video, tmp_path / "out", batch_size=2)
    assert written.frames == FRAMES and written.video_path == tmp_path / "out" / "clip.mp4"
    lines = [json.loads(line) for line in written.frames_path.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert all((line["width"], line["height"]) == (WIDTH, HEIGHT) for line in lines)
    # Each line holds what the API finds on that decoded frame.
    frames = _decoded_frames(video)
    for line, result in zip(lines, detector.predict(frames)):
        assert line["detections"] == result.detections() and len(result) > 0
    assert written.detections == sum(len(line["detections"]) for line in lines)
    drawn = _decoded_frames(written.video_path)
    assert len(drawn) == FRAMES and drawn[0].shape == (HEIGHT, WIDTH, 3)
    assert np.abs(drawn[0].astype(int) - frames[0].astype(int)).max() > 100  # boxes were drawn
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.jsonl", "clip.mp4"]


def test_predict_cli_takes_videos_and_images_together(tiny_run, video, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(tiny_run.checkpoint), str(video), "--out", str(out),
                 "--score-threshold", "0"]) == 0
    assert f"predicted {FRAMES} frames of {video}" in capsys.readouterr().out
    assert (out / "clip.mp4").is_file() and len((out / "clip.jsonl").read_text().splitlines()) == FRAMES


def test_missing_pyav_is_a_one_line_error(tiny_run, video, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    assert main(["predict", "--weights", str(tiny_run.checkpoint), str(video), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'dynatss[video]'" in err


def test_unreadable_video_names_the_file(tiny_run, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    detector = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu")
    with pytest.raises(DynatssError, match="broken.mp4: not a readable video"):
        predict_video(detector, broken, tmp_path / "out")
