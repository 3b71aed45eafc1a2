"""One run's report: config summary, final and best COCO metrics, per-class AP, training curves,
where the detector fails (PR curves, confusion matrix, per-class precision / recall / F1 of its
weights on the validation split) and sample predictions on validation images with their ground
truth. Written as OUT/report.md and OUT/report.html (OUT: the run directory unless told otherwise),
with figures and the samples' detections (samples.json) in OUT/report/.

The detector is loaded once by the caller (``dynatss report`` loads the run's checkpoint) and the
validation split read once; both the evaluation and the samples use them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from dynatss.api.detector import Detector
from dynatss.atomic import atomic_write_bytes, atomic_write_text, check_writable_folder
from dynatss.config import DISPLAY_SCORE_THRESHOLD
from dynatss.data.datasets import DatasetRead
from dynatss.draw.curves import ASSIGN_PANELS, LOSS_BOX, LOSS_PANELS, Curve, Panel, panels_png
from dynatss.draw.detections import draw_detections, encode_image
from dynatss.engine.evaluate import split_records
from dynatss.errors import DynatssError
from dynatss.reports.compare import format_value
from dynatss.reports.document import Document
from dynatss.reports.evaluation import analyse, class_rows, write_evaluation
from dynatss.reports.runs import COCO_COLUMNS, RunLog, flatten, read_run

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
ASSETS_DIR = "report"
SAMPLES_FILE = "samples.json"
METRIC_COLUMNS = (*COCO_COLUMNS, "AR100")
METRIC_DECIMALS = 3  # COCO metrics are fractions in [0, 1]
# The settings that tell runs apart (paper Tables I-V), shown at the top of the report.
SUMMARY_KEYS = (
    "model.backbone", "model.quality", "assign.mode", "assign.topk", "assign.pred_weight",
    "assign.anchor_weight", "assign.pred_schedule", "assign.anchor_schedule", "assign.levels",
    "assign.max_positives", "loss.classification",
    "loss.box_weight", "solver.max_iter", "solver.batch_size", "solver.base_lr", "solver.schedule",
    "solver.amp", "data.format", "data.root", "data.test_min_size", "train.seed",
)  # fmt: skip
LOSS_CURVES = (Panel("loss", "Total loss", "loss", log_scale=True), LOSS_BOX, *LOSS_PANELS)


def write_report(
    run_dir: Path, *, detector: Detector | None = None, out_dir: Path | None = None, num_images: int = 4,
    evaluation: bool = True,
) -> Path:
    """Write OUT/report.md (and report.html beside it); return the Markdown file's path.

    ``detector``: the run's trained model (None: no evaluation, no samples). ``evaluation``: run it
    over the validation split for PR curves, the confusion matrix and per-class precision / recall /
    F1 (one pass over the split). ``out_dir`` defaults to ``run_dir``.
    """
    run = read_run(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run.run_dir
    check_writable_folder(out_dir, what="report folder (report.md is written there)")
    assets = out_dir / ASSETS_DIR
    document = Document(f"Run report: {run.name}")
    _config_section(document, run)
    _metrics_section(document, run)
    _per_class_section(document, run)
    _curves_section(document, run, assets)
    dataset = _validation_split(document, detector) if detector is not None and (evaluation or num_images > 0) \
        else None
    if evaluation:
        _evaluation_section(document, detector, dataset, assets)
    if num_images > 0:
        _samples_section(document, detector, dataset, assets, num_images=num_images)
    atomic_write_text(out_dir / REPORT_HTML, document.to_html())
    return atomic_write_text(out_dir / REPORT_MD, document.to_markdown())

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
        path = atomic_write_bytes(assets / name, panels_png(curves, panels, title=title))
        document.image(f"{ASSETS_DIR}/{path.name}", title)


def _validation_split(document: Document, detector: Detector) -> DatasetRead | None:
    """The run's validation images, read once; None (said in the report and on stderr) when gone."""
    try:
        if detector.config is None:
            raise DynatssError(f"{detector.weights}: no config names the data of this model")
        return split_records(detector.config, detector.meta, detector.config.data.val_split)
    except DynatssError as error:
        document.paragraph(f"Evaluation and sample predictions skipped: {error}")
        print(f"warning: evaluation and sample predictions skipped: {error}", file=sys.stderr)
        return None


def _evaluation_section(document: Document, detector: Detector | None, dataset: DatasetRead | None,
                        assets: Path) -> None:
    document.heading("Where the detector fails")
    if detector is None:
        document.paragraph("No checkpoint in the run directory; PR curves and confusion matrix skipped.")
        return
    if dataset is None:
        return
    split = detector.config.data.val_split
    result = detector.evaluate(split, dataset=dataset)
    analysis = analyse(result.records, result.meta, result.detections)
    files = write_evaluation(analysis, assets, name=split)
    counts = analysis.counts
    document.paragraph(
        f"`{detector.weights.name}` on the '{split}' split. AP columns use every detection (as COCO); TP/FP/FN, "
        f"precision, recall and F1 count detections with score >= {counts.score_threshold:g} matched at "
        f"IoU >= {counts.iou:g}. Numbers: `{ASSETS_DIR}/{files.summary.name}`."
    )
    document.table(*class_rows(analysis))
    document.image(f"{ASSETS_DIR}/{files.pr_curves.name}", "Precision-recall curves per class")
    document.image(f"{ASSETS_DIR}/{files.confusion_matrix.name}", "Confusion matrix with background")


def _samples_section(document: Document, detector: Detector | None, dataset: DatasetRead | None, assets: Path,
                     *, num_images: int) -> None:
    document.heading("Sample predictions")
    if detector is None:
        document.paragraph("No checkpoint in the run directory; sample predictions skipped.")
        return
    if dataset is None:
        return
    written = _draw_samples(detector, dataset, assets, num_images=num_images)
    document.paragraph(
        f"Detections with score >= {DISPLAY_SCORE_THRESHOLD} from `{detector.weights.name}` on validation images "
        f"(white boxes edged in black: ground truth). Their detections: `{ASSETS_DIR}/{SAMPLES_FILE}`."
    )
    for path, source in written:
        document.image(f"{ASSETS_DIR}/{path.name}", Path(source).name)


def _draw_samples(detector: Detector, dataset: DatasetRead, assets: Path, *, num_images: int) -> list[tuple[Path, str]]:
    """Detect on ``num_images`` validation images spread over the split; write the drawings and
    their detections (samples.json, as predict's detections.json)."""
    records = dataset.records
    chosen = records[:: max(1, len(records) // num_images)][:num_images]
    results = detector.predict([record.path for record in chosen], score_threshold=DISPLAY_SCORE_THRESHOLD,
                               errors="keep")
    written, entries = [], []
    for index, (record, result) in enumerate(zip(chosen, results)):
        if not result.ok:
            print(f"warning: sample skipped: {result.error}", file=sys.stderr)
            continue
        drawn = draw_detections(result.image, result.boxes, result.labels, result.scores, detector.class_names,
                                ground_truth=torch.from_numpy(record.boxes))
        path = atomic_write_bytes(assets / f"sample_{index:02d}.png", encode_image(drawn, ".png"))
        written.append((path, str(record.path)))
        entries.append({**result.to_dict(), "output": path.name})
    atomic_write_text(assets / SAMPLES_FILE, json.dumps({"images": entries}, indent=1) + "\n")
    return written
