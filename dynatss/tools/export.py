"""Export a trained checkpoint: ONNX (dynamic batch and size, classes and input spec in its metadata) or
safetensors + JSON sidecar."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynatss.atomic import check_writable_file
from dynatss.config import Config, config_to_dict
from dynatss.data.records import DatasetMeta
from dynatss.errors import DynatssError

FORMATS = ("onnx", "safetensors")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)


def onnx_metadata(cfg: Config, meta: DatasetMeta) -> dict[str, Any]:
    """What the ONNX file carries besides the graph: classes, input spec, post-processing settings."""
    from dynatss import __version__
    from dynatss.api import backends

    return {
        backends.META_CLASS_NAMES: list(meta.class_names),
        backends.META_CATEGORY_IDS: [int(i) for i in meta.category_ids],
        backends.META_INPUT: backends.input_spec(cfg.data),
        backends.META_INFERENCE: dataclasses.asdict(cfg.inference),
        backends.META_VERSION: __version__,
    }


def export_weights(weights: str | Path, fmt: str, *, out: str | Path | None = None) -> ExportResult:
    """Load ``weights`` and write them in ``fmt``; ``out`` defaults to the weights path with the new suffix."""
    from dynatss.engine.inference import load_detector

    if fmt not in FORMATS:
        raise DynatssError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    path = Path(out) if out is not None else Path(weights).with_suffix(f".{fmt}")
    _check_output(path, Path(weights), fmt)
    detector, cfg, meta = load_detector(weights, device="cpu")
    if fmt == "safetensors":
        from dynatss.engine.checkpoint import save_safetensors

        save_safetensors(detector, path, config=config_to_dict(cfg), meta=meta)  # + .json sidecar
        return ExportResult(path)
    from dynatss.model.export import export_onnx

    path = export_onnx(detector, path, inference_cfg=cfg.inference, metadata=onnx_metadata(cfg, meta))
    return ExportResult(path, *onnx_io_names(path))


def _check_output(path: Path, weights: Path, fmt: str) -> None:
    """Refuse, before any work, an output that would overwrite the weights (or their sidecar) or
    cannot be written; a safetensors file must end in .safetensors (that is how it is loaded back)."""
    from dynatss.engine.checkpoint import sidecar_path

    if fmt == "safetensors" and path.suffix != ".safetensors":
        raise DynatssError(f"{path}: a safetensors export must end in .safetensors (its sidecar is the .json)")
    written = [path, sidecar_path(path)] if fmt == "safetensors" else [path]
    protected = [weights, sidecar_path(weights)] if weights.suffix == ".safetensors" else [weights]
    for target in written:
        if any(target.resolve() == source.resolve() for source in protected):
            raise DynatssError(f"{target}: the export would overwrite its own weights file; choose --out")
    check_writable_file(path, what="export file (--out)")


def onnx_io_names(path: Path) -> tuple[list[str], list[str]]:
    """The graph's input and output names (read back from the file, so they are what users see)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers], [o.name for o in graph.output]
