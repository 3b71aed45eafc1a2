"""The paper's ablation (Tables I-II) plus torchvision peers, several seeds each, and docs/results.md.

Every variant is the base config plus the dotted overrides of its configs/ablations/<name>.yaml
(the model / assign / loss sections: quality branch, assignment IoUs, classification loss); the peers
(torchvision FCOS, RetinaNet) run through experiments/peers.py with the same base config. Each run
is a subprocess with its own directory OUT/<variant>/seed<k> (log.txt: its stdout and stderr;
run.json: the command, machine and wall time). The grid is incremental: a run whose final evaluation
(an eval line at solver.max_iter) exists is skipped, and the results document is rebuilt from
whatever runs exist, marking the missing ones.

    python experiments/ablation.py --variants atss,atss_ciou,ciou_qfl_iou,tv_fcos --seeds 0,1 \
        --out runs/ablation --doc docs/results.md [--jobs 2] [--report-only] [key.sub=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
import yaml

from dynatss.atomic import atomic_write_text
from dynatss.config import load_config
from dynatss.errors import DynatssError
from dynatss.tools.compare import group_runs, plot_groups
from dynatss.tools.plots import ASSIGN_PANELS, LOSS_BOX
from dynatss.tools.runs import COCO_COLUMNS, RunLog, read_run

ROOT = Path(__file__).resolve().parents[1]
BASE_CONFIG = ROOT / "configs" / "experiments" / "bccd_ablation.yaml"
ABLATION_DIR = ROOT / "configs" / "ablations"
PEERS_SCRIPT = ROOT / "experiments" / "peers.py"
# The sections of configs/ablations/*.yaml that define a variant (train.* there is the R50 recipe's).
VARIANT_SECTIONS = ("model", "assign", "loss", "inference")
RUN_FILE = "run.json"
LOG_FILE = "log.txt"
GRID_FILE = "grid.json"
# One intra-op thread per run: on 2 shared cores, two single-thread runs side by side beat one
# two-thread run (measured: 1.4 s/it with 1 thread vs 4.3 s/it with 2 threads under load).
DEFAULT_JOBS = 2
FIG2_VARIANTS = ("atss", "atss_ciou", "ciou_qfl_iou")  # the paper's Fig. 2: ATSS vs + combined IoUs
MEAN_PIOU = next(panel for panel in ASSIGN_PANELS if panel.key == "mean_piou")


@dataclass(frozen=True)
class Variant:
    """A table row: our detector with configs/ablations/<name>.yaml, or a torchvision ``peer``."""

    name: str
    label: str
    peer: str | None = None


VARIANTS = (
    Variant("atss", "ATSS (AIoUs, focal, centerness)"),
    Variant("atss_ciou", "ATSS+CIoU"),
    Variant("atss_qfl", "ATSS+QFL"),
    Variant("atss_vfl", "ATSS+VFL"),
    Variant("piou_only", "PIoU only"),
    Variant("ciou_qfl", "CIoU+QFL"),
    Variant("ciou_vfl", "CIoU+VFL"),
    Variant("ciou_qfl_iou", "CIoU+QFL+IoU branch (Dynamic ATSS)"),
    Variant("ciou_vfl_iou", "CIoU+VFL+IoU branch"),
    Variant("gflv2", "GFLV2 (Table V)"),
    Variant("gflv2_ciou", "GFLV2+CIoU (Table V)"),
    Variant("vfnet", "VFNet (Table V)"),
    Variant("vfnet_ciou", "VFNet+CIoU (Table V)"),
    Variant("tv_fcos", "torchvision FCOS", peer="fcos"),
    Variant("tv_retinanet", "torchvision RetinaNet", peer="retinanet"),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}


def find_variants(names: list[str]) -> list[Variant]:
    unknown = [name for name in names if name not in VARIANTS_BY_NAME]
    if unknown:
        raise DynatssError(f"--variants: unknown {unknown} (choose from {list(VARIANTS_BY_NAME)})")
    return [VARIANTS_BY_NAME[name] for name in names]


def variant_overrides(variant: Variant, ablation_dir: Path = ABLATION_DIR) -> list[str]:
    """``key.sub=value`` strings of the variant's model/assign/loss settings ([] for a peer)."""
    if variant.peer is not None:
        return []
    path = ablation_dir / f"{variant.name}.yaml"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise DynatssError(f"{path}: ablation config of variant '{variant.name}' not found") from None
    overrides = []
    for section in VARIANT_SECTIONS:
        for key, value in (data.get(section) or {}).items():
            text = value if isinstance(value, str) else json.dumps(value)
            overrides.append(f"{section}.{key}={text}")
    return overrides


def run_command(variant: Variant, *, base_config: Path, seed: int, run_dir: Path, extra: list[str]) -> list[str]:
    """The command line of one run (our ``dynatss train`` or the peer script), as executed."""
    settings = [*variant_overrides(variant), *extra, f"train.seed={seed}", f"train.output_dir={run_dir}"]
    config = os.path.relpath(base_config)  # paths as a reader would type them from the repository root
    if variant.peer is not None:
        return [sys.executable, os.path.relpath(PEERS_SCRIPT), variant.peer, config, *settings]
    return [sys.executable, "-m", "dynatss", "train", config, *settings]


def final_metrics(run_dir: Path, max_iter: int) -> dict[str, float] | None:
    """The COCO metrics of the run's evaluation at ``max_iter``, or None when the run is not finished."""
    if not (run_dir / "metrics.jsonl").is_file():
        return None
    evals = [line for line in read_run(run_dir).evals if int(line["iter"]) == max_iter]
    return evals[-1]["metrics"] if evals else None


def machine() -> dict[str, str | int]:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "")
    return {"platform": platform.platform(), "cpu": cpu or platform.processor(), "cores": os.cpu_count() or 0,
            "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def execute(command: list[str], run_dir: Path, *, threads: int) -> dict:
    """Run one command with ``threads`` intra-op threads, output to run_dir/log.txt; write run.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.time()
    with open(run_dir / LOG_FILE, "w") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    info = {"command": shlex.join(command), "threads": threads, "returncode": returncode, "started": started,
            "wall_s": round(time.time() - started, 1), "machine": machine()}
    atomic_write_text(run_dir / RUN_FILE, json.dumps(info, indent=1))
    return info


# --------------------------------------------------------------------------------------------
# Results: aggregation over seeds and the markdown document


@dataclass
class Row:
    """One variant: per-seed metrics of finished runs (COCO fractions), wall times, failures."""

    variant: Variant
    seeds: list[int]
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    wall_s: dict[int, float] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)

    def summary(self, column: str) -> tuple[float, float] | None:
        """(mean, sample std) over seeds in percent; std 0 for one seed; None if nothing (or COCO's -1)."""
        values = [100 * m[column] for m in self.metrics.values() if m.get(column, -1) >= 0]
        if not values:
            return None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_cell(summary: tuple[float, float] | None, count: int) -> str:
    if summary is None:
        return "-"
    return f"{summary[0]:.1f}" if count < 2 else f"{summary[0]:.1f} ± {summary[1]:.1f}"


def render_table(rows: list[Row]) -> str:
    """Markdown table: mean ± std over seeds (percent, as the paper's tables) per variant."""
    lines = ["| Model | seeds | " + " | ".join(COCO_COLUMNS) + " | min/run |",
             "|---|---:|" + "---:|" * (len(COCO_COLUMNS) + 1)]
    for row in rows:
        done = len(row.metrics)
        cells = [format_cell(row.summary(column), done) for column in COCO_COLUMNS]
        minutes = [row.wall_s[s] / 60 for s in row.metrics if s in row.wall_s]
        wall = f"{statistics.fmean(minutes):.1f}" if minutes else "-"
        status = f"{done}/{len(row.seeds)}"
        missing = [s for s in row.seeds if s not in row.metrics]
        if missing:
            status += " (missing seed " + ", ".join(map(str, missing)) + ")"
        lines.append(f"| {row.variant.label} | {status} | " + " | ".join(cells) + f" | {wall} |")
    return "\n".join(lines) + "\n"


def render_per_seed(rows: list[Row]) -> str:
    """Markdown table: AP / AP50 of every seed, so that "at every seed" claims can be checked."""
    seeds = sorted({seed for row in rows for seed in row.seeds})
    lines = ["| Model | " + " | ".join(f"seed {seed} AP / AP50" for seed in seeds) + " |",
             "|---|" + "---:|" * len(seeds)]
    for row in rows:
        cells = [f"{100 * row.metrics[s]['AP']:.1f} / {100 * row.metrics[s]['AP50']:.1f}" if s in row.metrics else "-"
                 for s in seeds]
        lines.append(f"| {row.variant.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# Training-log keys summarised per variant: what the assignment did, and the regression loss.
ASSIGNMENT_KEYS = ("pos_per_gt", "mean_aiou", "mean_piou", "loss_box")
LAST_ITERATIONS = 50


def assignment_statistics(run_dir: Path, last: int = LAST_ITERATIONS) -> dict[str, float] | None:
    """Means over the last ``last`` logged iterations of metrics.jsonl (our detectors only)."""
    try:
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    train = [line for line in lines if line.get("type") == "train"]
    if not train or any(key not in train[-1] for key in ASSIGNMENT_KEYS):
        return None
    tail = [line for line in train if line["iter"] > train[-1]["iter"] - last]
    return {key: statistics.fmean(line[key] for line in tail) for key in ASSIGNMENT_KEYS}


def render_assignment(rows: list[Row], out: Path) -> str:
    """Markdown table: positives per GT, mean AIoU / PIoU of positives and box loss, mean over seeds."""
    lines = [f"| Model | {' | '.join(ASSIGNMENT_KEYS)} |", "|---|" + "---:|" * len(ASSIGNMENT_KEYS)]
    for row in rows:
        stats = [assignment_statistics(out / row.variant.name / f"seed{seed}") for seed in row.metrics]
        stats = [s for s in stats if s]
        if not stats:
            continue
        cells = [f"{statistics.fmean(s[key] for s in stats):.3f}" for key in ASSIGNMENT_KEYS]
        lines.append(f"| {row.variant.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def collect(variants: list[Variant], seeds: list[int], out: Path, max_iter: int) -> tuple[list[Row], list[dict]]:
    """Rows of finished runs and the run.json of every run that was started."""
    rows, infos = [], []
    for variant in variants:
        row = Row(variant, list(seeds))
        for seed in seeds:
            run_dir = out / variant.name / f"seed{seed}"
            info = _read_json(run_dir / RUN_FILE)
            metrics = final_metrics(run_dir, max_iter)
            if info is not None:
                infos.append({**info, "run_dir": str(run_dir)})
                row.wall_s[seed] = float(info["wall_s"])
                if info.get("returncode") and metrics is None:
                    row.failed.append(seed)
            if metrics is not None:
                row.metrics[seed] = metrics
        rows.append(row)
    return rows, infos


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_figures(variants: list[Variant], seeds: list[int], out: Path, figure_dir: Path, max_iter: int) -> list[Path]:
    """Fig. 2 (regression loss) and the mean PIoU of positives, ATSS vs Dynamic ATSS, seeds averaged."""
    runs: list[RunLog] = []
    labels: list[str] = []
    for variant in variants:
        if variant.name not in FIG2_VARIANTS:
            continue
        for seed in seeds:
            run_dir = out / variant.name / f"seed{seed}"
            if final_metrics(run_dir, max_iter) is not None:
                runs.append(read_run(run_dir))
                labels.append(variant.label)
    if not runs:
        return []
    groups = group_runs(runs, labels=labels)
    return [
        plot_groups(groups, (LOSS_BOX,), figure_dir / "loss_box.png",
                    title="Fig. 2", smooth=None),
        plot_groups(groups, (MEAN_PIOU,), figure_dir / "mean_piou.png",
                    title="PIoU", smooth=None),
    ]


def render_document(rows: list[Row], infos: list[dict], *, grid: dict, figures: list[Path], doc: Path,
                    out: Path | None = None) -> str:
    """docs/results.md: set-up, the table, the figures, the commands, the machine and the wall time."""
    setup = grid.get("setup", {})
    machines = {json.dumps(info["machine"], sort_keys=True) for info in infos if "machine" in info}
    total_s = sum(float(info["wall_s"]) for info in infos)
    lines = [
        "# Results: ablation on BCCD (paper Tables I-II) with torchvision peers", "",
        f"Dataset `{setup.get('data', '?')}`; {setup.get('model', '')}; {setup.get('solver', '')}; "
        f"seeds {', '.join(map(str, grid.get('seeds', [])))}. Every variant is `{grid.get('base_config', '?')}` "
        "plus the model/assign/loss overrides of `configs/ablations/<variant>.yaml`; the torchvision peers "
        "(experiments/peers.py) share backbone, FPN, head depth, input size, augmentation, SGD schedule, "
        "seeds and the COCO evaluation.", "",
        "COCO box AP (percent) on the test split after the last iteration: mean ± sample std over seeds; "
        "`-` where COCO has no ground truth of that size or no run finished; min/run is the mean wall time.", "",
        render_table(rows),
        "Per seed:", "",
        render_per_seed(rows),
    ]
    if out is not None:
        lines += [f"What the assignment did (training log, mean of the last {LAST_ITERATIONS} iterations, "
                  "mean over seeds; the box loss is GIoU weighted by the quality target, so it compares "
                  "runs with the same quality branch):", "", render_assignment(rows, out)]
    analysis = doc.with_name(f"{doc.stem}_analysis.md")
    if analysis.exists():
        lines += [analysis.read_text().rstrip(), ""]
    failed = [f"{row.variant.name} seed {seed}" for row in rows for seed in row.failed]
    if failed:
        lines += [f"Failed runs (see their log.txt): {', '.join(failed)}.", ""]
    if figures:
        lines += ["## Training curves", "", "Seeds averaged (band: ± 1 std over seeds).", ""]
        lines += [f"![{path.stem}]({os.path.relpath(path, doc.parent)})" for path in figures]
        lines.append("")
    lines += ["## Commands", "", "The grid (each invocation; runs already finished are skipped):", "", "```"]
    lines += grid.get("invocations", []) + ["```", "", "Each run (threads = OMP_NUM_THREADS):", "", "```"]
    lines += [f"# {info['run_dir']}: {info['wall_s'] / 60:.1f} min, {info['threads']} thread(s), "
              f"exit {info['returncode']}\n{info['command']}" for info in infos]
    lines += ["```", "", "## Machine and wall time", ""]
    lines += [f"- {', '.join(f'{k}: {v}' for k, v in json.loads(m).items())}" for m in sorted(machines)]
    lines += [f"- {len(infos)} runs, {total_s / 60:.1f} min of run wall time in all; "
              f"`--jobs {grid.get('jobs', '?')}` ran them {grid.get('jobs', '?')} at a time "
              f"(last invocation: {grid.get('elapsed_s', 0) / 60:.1f} min).", ""]
    return "\n".join(lines)


def write_results(variants: list[Variant], seeds: list[int], out: Path, doc: Path, max_iter: int) -> Path:
    grid = _read_json(out / GRID_FILE) or {}
    rows, infos = collect(variants, seeds, out, max_iter)
    figures = write_figures(variants, seeds, out, doc.parent / doc.stem, max_iter)
    return atomic_write_text(doc, render_document(rows, infos, grid=grid, figures=figures, doc=doc, out=out))


# --------------------------------------------------------------------------------------------
# The grid


def _setup_text(base_config: Path, extra: list[str]) -> dict[str, str]:
    cfg = load_config(base_config, extra)
    m, d, s = cfg.model, cfg.data, cfg.solver
    return {
        "data": f"{d.root} ({d.format}; train `{d.train_split}`, test `{d.val_split}`)",
        "model": f"{m.backbone} ({m.pretrained}) FPN P{m.min_level}-P{m.max_level} {m.fpn_channels} ch, "
                 f"head {m.head_convs} x {m.head_channels} ch; shorter side {d.min_sizes} (test "
                 f"{d.test_min_size}), longer <= {d.max_size}, flip {d.hflip_prob}",
        "solver": f"{s.max_iter} iterations, batch {s.batch_size}, SGD lr {s.base_lr} (warm-up {s.warmup_iters}, "
                  f"x{s.gamma} at {s.steps})",
    }


def run_grid(variants: list[Variant], seeds: list[int], out: Path, *, base_config: Path, extra: list[str],
             jobs: int, threads: int, max_iter: int) -> list[dict]:
    """Run every (seed, variant) without a final evaluation, ``jobs`` at a time; seed-major order."""
    pending = []
    for seed in seeds:
        for variant in variants:
            run_dir = out / variant.name / f"seed{seed}"
            if final_metrics(run_dir, max_iter) is None:
                command = run_command(variant, base_config=base_config, seed=seed, run_dir=run_dir, extra=extra)
                pending.append((command, run_dir))
    print(f"{len(pending)} of {len(seeds) * len(variants)} runs to do, {jobs} at a time", flush=True)

    def one(item: tuple[list[str], Path]) -> dict:
        command, run_dir = item
        print(f"start {run_dir}", flush=True)
        info = execute(command, run_dir, threads=threads)
        print(f"done  {run_dir}: exit {info['returncode']} in {info['wall_s'] / 60:.1f} min", flush=True)
        return info

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, pending))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides of the base config, for every run")
    parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS),
                        help=f"comma-separated, from {[v.name for v in VARIANTS]}")
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    parser.add_argument("--config", type=Path, default=BASE_CONFIG, help="base config")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="root of the run directories")
    parser.add_argument("--doc", type=Path, default=Path("docs/results.md"), help="results document")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    parser.add_argument("--report-only", action="store_true", help="rebuild the document from existing runs")
    args = parser.parse_args(argv)
    try:
        variants = find_variants([n for n in args.variants.split(",") if n])
        seeds = [int(s) for s in args.seeds.split(",") if s]
        cfg = load_config(args.config, args.overrides)
        max_iter = cfg.solver.max_iter
        if not args.report_only:
            if not Path(cfg.data.root).is_dir():
                raise DynatssError(f"{args.config}: data.root '{cfg.data.root}' not found from {Path.cwd()} "
                                   "(run from the repository root or override data.root)")
            started = time.time()
            grid_path = args.out / GRID_FILE
            grid = _read_json(grid_path) or {}
            invocation = shlex.join(["python", "experiments/ablation.py", *(argv if argv is not None else sys.argv[1:])])
            grid = {**grid, "base_config": os.path.relpath(args.config.resolve(), ROOT), "seeds": seeds,
                    "jobs": args.jobs, "setup": _setup_text(args.config, args.overrides),
                    "invocations": [*grid.get("invocations", []), invocation]}
            atomic_write_text(grid_path, json.dumps(grid, indent=1))
            infos = run_grid(variants, seeds, args.out, base_config=args.config, extra=list(args.overrides),
                             jobs=args.jobs, threads=args.threads, max_iter=max_iter)
            atomic_write_text(grid_path, json.dumps({**grid, "elapsed_s": round(time.time() - started, 1)}, indent=1))
            failures = sum(1 for info in infos if info["returncode"])
        else:
            failures = 0
        print(f"results: {write_results(variants, seeds, args.out, args.doc, max_iter)}")
    except DynatssError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
