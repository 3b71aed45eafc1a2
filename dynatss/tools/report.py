"""One run's report: config summary, final and best COCO metrics, per-class AP, training curves,
where the detector fails (PR curves, confusion matrix, per-class precision / recall / F1 of its
checkpoint on the validation split) and sample predictions on validation images. Written as
RUN_DIR/report.md and RUN_DIR/report.html, with figures in RUN_DIR/report/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dynatss.atomic import atomic_write_bytes, atomic_write_text, check_writable_folder
from dynatss.errors import DynatssError
from dynatss.tools.compare import format_value
from dynatss.tools.document import Document
from dynatss.tools.images import draw_detections, encode_image, read_image
from dynatss.tools.plots import ASSIGN_PANELS, LOSS_BOX, LOSS_PANELS, Curve, Panel, plot_panels
from dynatss.tools.runs import COCO_COLUMNS, RunLog, flatten, read_run

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
ASSETS_DIR = "report"
# Detections drawn on sample images: a display threshold, higher than the evaluation one.
SAMPLE_SCORE_THRESHOLD = 0.3
METRIC_COLUMNS = (*COCO_COLUMNS, "AR100")
METRIC_DECIMALS = 3  # COCO metrics are fractions in [0, 1]
# The settings that tell runs apart (paper Tables I-V), shown at the top of the report.
SUMMARY_KEYS = (
    "model.backbone", "model.quality", "assign.mode", "assign.topk", "assign.pred_weight",
    "assign.anchor_weight", "assign.pred_schedule", "assign.anchor_schedule", "loss.classification",
    "loss.box_weight", "solver.max_iter", "solver.batch_size", "solver.base_lr", "solver.schedule",
    "solver.amp", "data.format", "data.root", "data.test_min_size", "train.seed",
)  # fmt: skip
LOSS_CURVES = (Panel("loss", "Total loss", "loss", log_scale=True), LOSS_BOX, *LOSS_PANELS)


def write_report(
    run_dir: Path, *, num_images: int = 4, device: str | torch.device = "cpu", evaluation: bool = True
) -> Path:
    """Write RUN_DIR/report.md (and report.html beside it); return the Markdown file's path.

    ``evaluation``: run the run's checkpoint over the validation split for PR curves, the confusion
    matrix and per-class precision / recall / F1 (one pass over the split).
    """
    run = read_run(run_dir)
    check_writable_folder(run.run_dir, what="run directory (report.md is written there)")
    assets = run.run_dir / ASSETS_DIR
    document = Document(f"Run report: {run.name}")
    _config_section(document, run)
    _metrics_section(document, run)
    _per_class_section(document, run)
    _curves_section(document, run, assets)
    if evaluation:
        _evaluation_section(document, run, assets, device=device)
    _samples_section(document, run, assets, num_images=num_images, device=device)
    atomic_write_text(run.run_dir / REPORT_HTML, document.to_html())
    return atomic_write_text(run.run_dir / REPORT_MD, document.to_markdown())


def _config_section(document: Document, run: RunLog) -> None:
    document.heading("Configuration")
    flat = flatten(run.config)
    if not flat:
        document.paragraph("No config.yaml in the run directory.")
        return
    rows = [[key, _plain(flat[key])] for key in SUMMARY_KEYS if key in flat]
    document.table(["setting", "value"], rows)
    document.paragraph(f"Full resolved config: `{run.run_dir / 'config.yaml'}`.")


def _plain(value: object) -> str:
    return ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _metrics_section(document: Document, run: RunLog) -> None:
    document.heading("COCO metrics")
    final, best = run.final_eval, run.best_eval
    if final is None:
        document.paragraph("No evaluation logged (no `eval` line in metrics.jsonl).")
        return
    rows = []
    for name, line in (("final", final), ("best AP", best)):
        if line is None:
            continue
        cells = [format_value([line["metrics"][c]] if c in line["metrics"] else [], METRIC_DECIMALS)
                 for c in METRIC_COLUMNS]
        rows.append([name, str(int(line["iter"])), *cells])
    document.table(["evaluation", "iter", *METRIC_COLUMNS], rows)
    document.paragraph(f"{len(run.evals)} evaluations logged; '-' marks a size with no ground truth.")


def _per_class_section(document: Document, run: RunLog) -> None:
    final, best = run.final_eval, run.best_eval
    if final is None or not final.get("per_class"):
        return
    document.heading("Per-class AP")
    best_per_class = (best or {}).get("per_class", {})
    rows = [
        [name, format_value([ap], METRIC_DECIMALS), format_value(_listed(best_per_class.get(name)), METRIC_DECIMALS)]
        for name, ap in final["per_class"].items()
    ]
    best_header = f"at best AP (iter {best['iter']})" if best else "at best AP"
    document.table(["class", f"final (iter {final['iter']})", best_header], rows)


def _listed(value: float | None) -> list[float]:
    return [] if value is None else [value]


def _curves_section(document: Document, run: RunLog, assets: Path) -> None:
    document.heading("Training curves")
    if not run.train:
        document.paragraph("No training lines in metrics.jsonl.")
        return
    for panels, name, title in (
        (LOSS_CURVES, "losses.png", "Losses"),
        (ASSIGN_PANELS, "assignment.png", "Label-assignment statistics"),
    ):
        curves = {panel.key: [Curve(run.name, *run.series(panel.key))] for panel in panels}
        path = plot_panels(curves, panels, assets / name, title=title)
        document.image(f"{ASSETS_DIR}/{path.name}", title)


def _evaluation_section(document: Document, run: RunLog, assets: Path, *, device: str | torch.device) -> None:
    from dynatss.tools.eval_plots import class_rows, write_evaluation

    document.heading("Where the detector fails")
    checkpoint = run.checkpoint()
    if checkpoint is None:
        document.paragraph("No checkpoint in the run directory; PR curves and confusion matrix skipped.")
        return
    try:
        analysis, split = _analyse_checkpoint(checkpoint, device=device)
    except DynatssError as error:
        document.paragraph(f"PR curves and confusion matrix skipped: {error}")
        print(f"warning: PR curves and confusion matrix skipped: {error}", file=sys.stderr)
        return
    files = write_evaluation(analysis, assets, name=split)
    counts = analysis.counts
    document.paragraph(
        f"`{checkpoint.name}` on the '{split}' split. AP columns use every detection (as COCO); TP/FP/FN, "
        f"precision, recall and F1 count detections with score >= {counts.score_threshold:g} matched at "
        f"IoU >= {counts.iou:g}. Numbers: `{ASSETS_DIR}/{files.summary.name}`."
    )
    document.table(*class_rows(analysis))
    document.image(f"{ASSETS_DIR}/{files.pr_curves.name}", "Precision-recall curves per class")
    document.image(f"{ASSETS_DIR}/{files.confusion_matrix.name}", "Confusion matrix with background")


def _analyse_checkpoint(checkpoint: Path, *, device: str | torch.device):
    """Detections of ``checkpoint`` on its validation split (the evaluation's own pass), analysed."""
    from dynatss.data.loader import build_test_loader
    from dynatss.engine.evaluate import predict_split
    from dynatss.engine.inference import load_detector
    from dynatss.tools.eval_plots import analyse

    detector, cfg, meta = load_detector(checkpoint, device=device)
    records = _validation_records(cfg, meta)
    loader = build_test_loader(records, cfg.data, batch_size=cfg.data.test_batch_size)
    per_image = predict_split(detector, loader, meta, cfg, torch.device(device))
    detections = [d for image_id in sorted(per_image) for d in per_image[image_id]]
    seen = [record for record in records if record.image_id in per_image]  # decoded images only
    return analyse(seen, meta, detections), cfg.data.val_split


def _samples_section(document: Document, run: RunLog, assets: Path, *, num_images: int, device: str | torch.device) -> None:
    if num_images <= 0:
        return
    document.heading("Sample predictions")
    checkpoint = run.checkpoint()
    if checkpoint is None:
        document.paragraph("No checkpoint in the run directory; sample predictions skipped.")
        return
    try:
        written = _draw_samples(checkpoint, assets, num_images=num_images, device=device)
    except DynatssError as error:
        document.paragraph(f"Sample predictions skipped: {error}")
        print(f"warning: sample predictions skipped: {error}", file=sys.stderr)
        return
    document.paragraph(
        f"Detections with score >= {SAMPLE_SCORE_THRESHOLD} from `{checkpoint.name}` on validation images "
        "(thin white boxes: ground truth)."
    )
    for path, source in written:
        document.image(f"{ASSETS_DIR}/{path.name}", source.name)


def _validation_records(cfg, meta) -> list:
    """The run's validation images. Runs store ``data.root`` absolute; an older run's relative root is
    read from the current folder, and only if that data has the run's classes (else another run's)."""
    from dynatss.engine.build import load_split

    root = Path(cfg.data.root)
    where = root if root.is_absolute() else f"{root} (relative to {Path.cwd()}; the run does not record its folder)"
    if cfg.data.format != "synthetic" and not root.is_dir():
        raise DynatssError(f"data.root {where} no longer exists; the data of this run is gone")
    read = load_split(cfg.data, cfg.data.val_split)
    if tuple(read.meta.class_names) != tuple(meta.class_names):
        raise DynatssError(
            f"data.root {where} holds classes {list(read.meta.class_names)}, not this run's {list(meta.class_names)}"
        )
    if not read.records:
        raise DynatssError(f"{cfg.data.root}: the '{cfg.data.val_split}' split has no images")
    return read.records


def _draw_samples(checkpoint: Path, assets: Path, *, num_images: int, device: str | torch.device) -> list[tuple[Path, Path]]:
    """Detect on ``num_images`` validation images spread over the split; write the drawings."""
    from dynatss.engine.inference import load_detector
    from dynatss.tools.predict import detect

    detector, cfg, meta = load_detector(checkpoint, device=device)
    records = _validation_records(cfg, meta)
    step = max(1, len(records) // num_images)
    chosen = records[::step][:num_images]
    written = []
    for index, record in enumerate(chosen):
        image = read_image(record.path, max_pixels=cfg.data.max_image_pixels)
        (result,) = detect(detector, [image], cfg, device=device)
        shown = result["scores"] >= SAMPLE_SCORE_THRESHOLD  # on the final score, as predict
        drawn = draw_detections(image, result["boxes"][shown], result["labels"][shown], result["scores"][shown],
                                meta.class_names, ground_truth=torch.from_numpy(record.boxes))
        path = atomic_write_bytes(assets / f"sample_{index:02d}.png", encode_image(drawn, ".png"))
        written.append((path, record.path))
    return written
