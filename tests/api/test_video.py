"""Videos: ``Detector.predict``/``stream`` give one Result per frame; `dynatss predict` writes an
annotated video and one JSON line per frame (PyAV, optional)."""

from __future__ import annotations

import json
import sys

import av
import numpy as np
import pytest

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


def test_a_video_gives_one_result_per_frame_as_its_decoded_frames_do(tiny_run, video):
    detector = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", score_threshold=0.0)
    streamed = detector.stream(str(video), batch_size=2)
    assert not isinstance(streamed, list)  # a generator: frames are read as they are reached
    results = list(streamed)
    assert [r.frame for r in results] == list(range(FRAMES)) and all(r.source == str(video) for r in results)
    frames = _decoded_frames(video)
    for result, frame in zip(results, detector.predict(frames), strict=True):
        assert (result.width, result.height) == (WIDTH, HEIGHT) and len(result) > 0
        assert result.detections() == frame.detections()
    assert len(detector.predict(video)) == FRAMES  # predict: the same results as a list


def test_predict_cli_writes_the_drawn_video_and_frame_lines(tiny_run, video, tmp_path, capsys):
    detector = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", score_threshold=0.0)
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(tiny_run.checkpoint), str(video), "--out", str(out),
                 "--score-threshold", "0", "--batch-size", "2"]) == 0
    lines = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert all((line["width"], line["height"]) == (WIDTH, HEIGHT) for line in lines)
    for line, result in zip(lines, detector.predict(_decoded_frames(video)), strict=True):
        assert line["detections"] == result.detections()
    drawn = _decoded_frames(out / "clip.mp4")
    frames = _decoded_frames(video)
    assert len(drawn) == FRAMES and drawn[0].shape == (HEIGHT, WIDTH, 3)
    assert np.abs(drawn[0].astype(int) - frames[0].astype(int)).max() > 100  # boxes were drawn
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip.mp4", "detections.json"]


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
        detector.predict(broken)
    (failed,) = detector.predict([broken], errors="keep")
    assert not failed.ok and "broken.mp4: not a readable video" in failed.error
