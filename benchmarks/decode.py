"""PNG decoding: dynatss's decoder (PIL for PNG) against torchvision.io.decode_image, same files.

dynatss decodes PNG with PIL because torchvision 0.29's PNG decoder crashes the process on a PNG
whose pixel data is shorter than its header says (docs/data.md). This measures what that costs on
photo-like PNGs (a gradient with noise, so zlib has work to do) at a few sizes. The two decoders
alternate and the best of ``--repeats`` rounds is kept, to reduce noise from other processes; the
result is the ratio PIL / torchvision (1.0: as fast). Both must give identical pixels.

    .venv/bin/python benchmarks/decode.py [--sizes 256 1024] [--decodes 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, read_file

from dynatss.data.decode import decode_image as dynatss_decode


def _photo_like(size: int) -> np.ndarray:
    ramp = np.linspace(0, 255, size * size * 3).reshape(size, size, 3).astype(np.uint8)
    return ramp ^ np.random.default_rng(0).integers(0, 16, (size, size, 3), dtype=np.uint8)


def _torchvision_decode(path: Path) -> torch.Tensor:
    return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)


def _seconds(function, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        function()
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--decodes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| size | torchvision ms | dynatss (PIL) ms | ratio |\n|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            path = Path(folder) / f"{size}.png"
            Image.fromarray(_photo_like(size)).save(path)
            ours = functools.partial(dynatss_decode, path)
            theirs = functools.partial(_torchvision_decode, path)
            assert torch.equal(ours(), theirs())
            best = {"ours": float("inf"), "theirs": float("inf")}
            for _ in range(args.repeats):
                best["theirs"] = min(best["theirs"], _seconds(theirs, args.decodes))
                best["ours"] = min(best["ours"], _seconds(ours, args.decodes))
            ratio = best["ours"] / best["theirs"]
            print(f"| {size} | {1000 * best['theirs']:.1f} | {1000 * best['ours']:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
