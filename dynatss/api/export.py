"""Export a loaded model: ONNX (dynamic batch and size, classes and input spec in its metadata) or
safetensors + JSON sidecar. The writers are dynatss.model.onnx_export and dynatss.engine.checkpoint."""

from __future__ import annotations

from pathlib import Path

from dynatss.atomic import check_writable_file
from dynatss.config import Config, config_to_dict
from dynatss.data.records import DatasetMeta
from dynatss.engine.checkpoint import save_safetensors, sidecar_path
from dynatss.errors import DynatssError
from dynatss.model.detector import DetectionModel
from dynatss.model.onnx_export import export_onnx, onnx_metadata
from dynatss.version import __version__

FORMATS = ("onnx", "safetensors")


def export_model(model: DetectionModel, cfg: Config, meta: DatasetMeta, weights: Path, fmt: str, *,
                 out: str | Path | None = None) -> Path:
    """Write ``model`` (loaded from ``weights``) in ``fmt``; ``out`` defaults to the weights path
    with the format's suffix. Returns the path written."""
    if fmt not in FORMATS:
        raise DynatssError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    path = Path(out) if out is not None else Path(weights).with_suffix(f".{fmt}")
    check_output(path, Path(weights), fmt)
    if fmt == "safetensors":
        save_safetensors(model, path, config=config_to_dict(cfg), meta=meta)  # + .json sidecar
        return path
    return export_onnx(model, path, inference_cfg=cfg.inference,
                       metadata=onnx_metadata(cfg.data, cfg.inference, meta, __version__))


def check_output(path: Path, weights: Path, fmt: str) -> None:
    """Refuse, before any work, an output that would overwrite the weights (or their sidecar) or
    cannot be written; a safetensors file must end in .safetensors (that is how it is loaded back)."""
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
