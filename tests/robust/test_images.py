"""Images (issue 11): one decoder for every depth, one pixel limit, no zero-size resize, one cached scan."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from dynatss.config import DataConfig
from dynatss.data import decode, scan
from dynatss.data.decode import ImageError, decode_image, read_header
from dynatss.data.transforms import build_transforms, transform_sample
from tests.data.helpers import write_coco
from tests.robust.conftest import one_line_error
from tests.robust.odd_images import gradient16, png_bytes, png_header_only, write_png16, write_truncated_jpeg


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_png_keeps_its_high_byte(tmp_path, channels):
    pixels = write_png16(tmp_path / "deep.png", 30, 40, channels)
    image = decode_image(tmp_path / "deep.png")
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 30, 40)
    expected = np.broadcast_to((pixels >> 8).reshape(30, 40, -1), (30, 40, 3))
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)
    assert image.max() == 255  # not an all-dark image


def test_formats_pil_reads_decode_like_the_others(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for name in ("a.png", "a.bmp", "a.tif", "a.webp"):
        Image.fromarray(pixels).save(tmp_path / name, **({"lossless": True} if name.endswith("webp") else {}))
        np.testing.assert_array_equal(decode_image(tmp_path / name).permute(1, 2, 0).numpy(), pixels, err_msg=name)
    deep = gradient16(20, 30, 1)
    Image.fromarray(deep).save(tmp_path / "deep.tif")  # PIL mode I;16
    np.testing.assert_array_equal(decode_image(tmp_path / "deep.tif")[0].numpy(), deep >> 8)
    Image.fromarray(pixels).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(pixels).convert("LA").save(tmp_path / "gray_alpha.png")
    for name in ("palette.png", "gray_alpha.png"):
        assert tuple(decode_image(tmp_path / name).shape) == (3, 20, 30)


def test_pixel_limit_refuses_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "claims_100k.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    monkeypatch.setattr(decode, "_decode_pil", lambda *a: pytest.fail("decoded a refused image"))
    with pytest.raises(ImageError, match=r"claims_100k.png: .*exceeds the limit"):
        decode_image(path)
    small = tmp_path / "small.png"
    small.write_bytes(png_bytes(np.zeros((50, 50), np.uint8)))
    with pytest.raises(ImageError, match=r"50x50 = 2,500 pixels exceeds the limit of 2,000"):
        read_header(small, max_pixels=2000)
    assert read_header(small, max_pixels=2500).width == 50


def test_short_png_data_is_an_error_not_a_crash(tmp_path):
    # torchvision 0.29's PNG decoder dies with SIGSEGV on this file; the decoder must raise.
    path = tmp_path / "short.png"
    path.write_bytes(png_header_only(300, 200))
    with pytest.raises(ImageError, match="short.png: cannot decode image"):
        decode_image(path)


@pytest.mark.parametrize("size", [(4, 4000), (1000, 4), (4000, 4)])
def test_extreme_aspect_ratio_keeps_every_side_at_least_one_pixel(size):
    height, width = size
    image = torch.zeros((3, height, width), dtype=torch.uint8)
    boxes = torch.tensor([[0.0, 0.0, width / 2, height / 2]])
    for train in (True, False):
        transform = build_transforms(DataConfig(min_sizes=[320], max_size=512, test_min_size=320), train=train)
        out, out_boxes = transform_sample(transform, image, boxes)
        assert min(out.shape[-2:]) >= 1 and max(out.shape[-2:]) <= 512
        assert out_boxes.shape == (1, 4)


def test_resize_matches_torchvision_on_ordinary_images():
    """The test resize is torchvision's (shorter side 320 capped by max_size, bilinear, antialiased),
    pixel for pixel and box for box, on a random image."""
    from torchvision.transforms.v2 import functional as F

    image = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[10.0, 20.0, 300.0, 400.0]])
    cfg = DataConfig(min_sizes=[320, 352], max_size=512, test_min_size=320)
    ours, our_boxes = transform_sample(build_transforms(cfg, train=False), image, boxes)
    assert tuple(ours.shape[-2:]) == (320, 426)  # 640 x 320 / 480 = 426.7, truncated as torchvision does
    theirs = F.resize(tv_tensors.Image(image), [320, 426], antialias=True)
    assert torch.equal(ours, theirs.as_subclass(torch.Tensor))
    torch.testing.assert_close(our_boxes, boxes * torch.tensor([426 / 640, 320 / 480, 426 / 640, 320 / 480]))


def test_scan_is_cached_and_sees_changed_files(tmp_path, monkeypatch):
    root = write_coco(tmp_path / "data")
    paths = sorted((root / "train").iterdir())
    first = scan.scan_images(paths, root=root)
    decoded = []
    monkeypatch.setattr(scan, "_decoded_size", lambda path, limit: decoded.append(path) or (1, 1))
    assert scan.scan_images(paths, root=root) == first and decoded == []
    write_truncated_jpeg(paths[0])  # same name, new content: decoded again
    scan.scan_images(paths, root=root)
    assert decoded == [paths[0]]
    cache_files = list((scan.cache_dir() / "image-scan").glob("*.json"))
    assert any(str(paths[1].resolve()) in json.loads(f.read_text()) for f in cache_files)


def test_data_check_sees_what_training_sees(tmp_path, run_cli):
    spec = [("deep.png", (40, 30), [(2, 3, 20, 25, 0, False)]), ("cut.jpg", (48, 64), [(1, 1, 9, 9, 1, False)]),
            ("huge.png", (20, 20), []), ("ok.png", (30, 30), [(1, 1, 9, 9, 1, False)])]
    root = write_coco(tmp_path / "data", spec)
    write_png16(root / "train" / "deep.png", 30, 40, 3)
    write_truncated_jpeg(root / "train" / "cut.jpg")
    (root / "train" / "huge.png").write_bytes(png_header_only(20_000, 20_000))
    code, out, _ = run_cli(["data", "check", root])
    assert code == 1
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("cut.jpg" in line and "cannot decode" in line for line in errors)
    assert any("huge.png" in line and "exceeds the limit" in line for line in errors)
    code, out, _ = run_cli(["data", "check", root, "--max-pixels", "1000000000"])
    assert "huge.png" in out and "exceeds" not in out  # the limit is configurable


def test_predict_handles_every_odd_image_and_keeps_the_others(tiny_run, tmp_path, run_cli):
    folder = tmp_path / "images"
    folder.mkdir()
    write_png16(folder / "deep_rgb.png", 60, 80, 3)
    write_png16(folder / "deep_gray.png", 60, 80, 1)
    Image.fromarray(np.full((4, 4000, 3), 90, np.uint8)).save(folder / "wide.png")
    Image.fromarray(np.full((1000, 4, 3), 90, np.uint8)).save(folder / "tall.png")
    (folder / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    write_truncated_jpeg(folder / "cut.jpg")
    code, _, err = run_cli(["predict", "--weights", tiny_run.checkpoint, folder, "--out", tmp_path / "out"])
    assert code == 1 and "Traceback" not in err
    document = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert sorted(entry["output"] for entry in document["images"]) == [
        "deep_gray.png", "deep_rgb.png", "tall.png", "wide.png"]  # fmt: skip
    assert sorted(entry["file"].rsplit("/", 1)[-1] for entry in document["failed"]) == ["bomb.png", "cut.jpg"]
    assert (tmp_path / "out" / "deep_rgb.png").stat().st_size > 0
    code, _, err = run_cli(["predict", "--weights", tiny_run.checkpoint, folder / "bomb.png",
                            "--out", tmp_path / "out2", "--max-pixels", "0"])
    one_line_error(err, "--max-pixels")
