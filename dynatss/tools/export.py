"""Export a trained checkpoint: ONNX (via the model's export_onnx) or safetensors + JSON sidecar."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from dynatss.config import Config, config_to_dict
from dynatss.errors import DynatssError

FORMATS = ("onnx", "safetensors")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)


def default_input_size(cfg: Config) -> tuple[int, int]:
    """A square input of the test scale, padded to the size divisibility (as the test loader pads)."""
    divisor = max(1, cfg.data.size_divisibility)
    side = math.ceil(cfg.data.test_min_size / divisor) * divisor
    return side, side


def export_weights(
    weights: str | Path,
    fmt: str,
    *,
    out: str | Path | None = None,
    height: int | None = None,
    width: int | None = None,
) -> ExportResult:
    """Load ``weights`` and write them in ``fmt``; ``out`` defaults to the weights path with the new suffix."""
    from dynatss.engine.inference import load_detector

    if fmt not in FORMATS:
        raise DynatssError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    detector, cfg, meta = load_detector(weights, device="cpu")
    path = Path(out) if out is not None else Path(weights).with_suffix(f".{fmt}")
    if path.resolve() == Path(weights).resolve():
        raise DynatssError(f"{path}: the export would overwrite its own weights file; choose --out")
    if fmt == "safetensors":
        from dynatss.engine.checkpoint import save_safetensors

        save_safetensors(detector, path, config=config_to_dict(cfg), meta=meta)  # + .json sidecar
        return ExportResult(path)
    from dynatss.model.export import export_onnx

    default_height, default_width = default_input_size(cfg)
    height, width = height or default_height, width or default_width
    if height <= 0 or width <= 0:
        raise DynatssError(f"--height/--width must be positive, got {height}x{width}")
    path = export_onnx(detector, path, height=height, width=width, inference_cfg=cfg.inference)
    return ExportResult(path, *onnx_io_names(path))


def onnx_io_names(path: Path) -> tuple[list[str], list[str]]:
    """The graph's input and output names (read back from the file, so they are what users see)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers], [o.name for o in graph.output]
