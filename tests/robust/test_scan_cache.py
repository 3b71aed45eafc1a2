"""The image-scan cache (issue 18, item 5): every entry is checked, a bad one is recomputed, and
``data check`` decodes every file afresh unless told to trust the cache (``--cache``)."""

from __future__ import annotations

import json
import os

import pytest

from dynatss.data import scan
from dynatss.data.datasets import read_dataset
from tests.data.helpers import write_coco, write_yolo

# Valid JSON of the wrong type, as a whole entry and as the verdict beside a valid fingerprint.
BAD_VALUES = [5, "text", None, [1, 1], [], {"a": 1}, [40], [1.5, 2], [True, 3], [0, 0], [-40, 30], ["40", "30"]]
FINGERPRINT = object()  # stands for the entry's own (valid) fingerprint


def _cache_of(root):
    """(path, content) of the scan cache that holds ``root``'s images."""
    for path in (scan.cache_dir() / "image-scan").glob("*.json"):
        content = json.loads(path.read_text())
        if any(str(root.resolve()) in key for key in content):
            return path, content
    raise AssertionError(f"no scan cache for {root}")


def _sizes(read):
    return [(r.path.name, r.width, r.height) for r in read.records]


@pytest.mark.parametrize("keep_fingerprint", [False, True])
@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
def test_a_bad_cache_entry_is_recomputed(tmp_path, run_cli, bad, keep_fingerprint):
    root = write_yolo(tmp_path / "data")  # YOLO: no annotated size, the scan's size is the record's
    expected = _sizes(read_dataset("yolo", root, "train", verify=True))
    code, expected_out, _ = run_cli(["data", "check", root])
    assert code == 0
    path, cache = _cache_of(root)
    path.write_text(json.dumps({key: [entry[0], bad] if keep_fingerprint else bad for key, entry in cache.items()}))
    assert _sizes(read_dataset("yolo", root, "train", verify=True)) == expected
    code, out, err = run_cli(["data", "check", root, "--cache"])
    assert (code, out, err) == (0, expected_out, "")


@pytest.mark.parametrize("content", [b"[]", b"5", b'"x"', b"\xff\xfe garbage", b'{"a": [[1, 2, 3, 4], true]}'])
def test_a_cache_file_of_the_wrong_type_is_ignored(tmp_path, content):
    root = write_coco(tmp_path / "data")
    expected = _sizes(read_dataset("coco", root, "train", verify=True))
    path, _ = _cache_of(root)
    path.write_bytes(content)
    assert _sizes(read_dataset("coco", root, "train", verify=True)) == expected


def test_data_check_decodes_files_damaged_in_place_unless_told_to_trust_the_cache(tmp_path, run_cli):
    root = write_coco(tmp_path / "data")
    code, _, _ = run_cli(["data", "check", root])
    assert code == 0
    image = root / "train" / "a.png"
    stat = image.stat()
    data = bytearray(image.read_bytes())
    start = data.index(b"IDAT") + 8
    data[start : start + 64] = b"\xff" * 64  # the pixel data is damaged, size and header are not
    image.write_bytes(bytes(data))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert image.stat().st_size == stat.st_size and image.stat().st_mtime_ns == stat.st_mtime_ns
    code, out, _ = run_cli(["data", "check", root, "--cache"])
    assert code == 0  # the cache's verdict for an unchanged fingerprint, as asked
    code, out, _ = run_cli(["data", "check", root])
    assert code == 1 and "a.png" in out and "cannot decode" in out
    code, out, _ = run_cli(["data", "check", root, "--no-cache"])
    assert code == 1 and "a.png" in out
    read = read_dataset("coco", root, "train", verify=True)  # the fresh verdict was cached for train
    assert [r.path.name for r in read.records] == ["b.png", "c.png"]
