"""The paper's ablation (Tables I-II, V) plus torchvision peers, per dataset, several seeds, and docs/results.md.

Every run is the base config (the small-data recipe, configs/recipes/small_data_cpu.yaml), then the
dataset's overrides (configs/experiments/<dataset>.yaml), then the variant's model / assign / loss /
inference (and, for the EMA rows, solver) settings (configs/ablations/<variant>.yaml); the peers
(torchvision FCOS, RetinaNet) run through experiments/peers.py with the same base and dataset
settings. Each run is a subprocess with its own scratch directory OUT/<dataset>/<variant>/seed<k>
(log.txt, run.json: command, machine, wall time); when it finishes, its metrics.jsonl and run.json
are copied to docs/results/runs/<dataset>/<variant>/seed<k>/, which is committed. A run found there
is done, so a grid resumes in a later session, and the results document is rebuilt from those
copies alone. A run stopped half-way continues from its last checkpoint; one stopped before its first
is moved aside to OUT/.../seed<k>.unresumable-<n> and started anew.

    python experiments/ablation.py --dataset bccd --variants atss,ciou_qfl_iou,tv_fcos --seeds 0,1,2 \
        [--jobs 2] [--report-only] [key.sub=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torchvision
import yaml

if __package__ in (None, ""):  # run as a script (python experiments/ablation.py): make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynatss.atomic import atomic_write_text
from dynatss.config import load_config
from dynatss.engine.build import load_split
from dynatss.engine.lr_schedule import describe_lr, schedule_in_epochs
from dynatss.engine.resume import find_resume_point
from dynatss.engine.run_dir import CHECKPOINT_DIR, holds_run
from dynatss.engine.run_lock import LOCK_FILE, RunDirLock
from dynatss.errors import DynatssError
from experiments.results_doc import GRID_FILE, RUN_FILE, final_metrics, read_json, write_results
from experiments.variants import VARIANTS, Variant, find_variants

ROOT = Path(__file__).resolve().parents[1]
BASE_CONFIG = ROOT / "configs" / "recipes" / "small_data_cpu.yaml"
DATASET_DIR = ROOT / "configs" / "experiments"
ABLATION_DIR = ROOT / "configs" / "ablations"
RESULTS_DIR = ROOT / "docs" / "results" / "runs"
# What is copied from a finished run into RESULTS_DIR (small text files; checkpoints stay behind).
ARCHIVED_FILES = ("metrics.jsonl", "run.json")
PEERS_SCRIPT = ROOT / "experiments" / "peers.py"
# The sections of configs/ablations/*.yaml that define a variant (train.* there is the R50 recipe's;
# solver.* only where a variant changes the training itself, as the EMA rows).
VARIANT_SECTIONS = ("model", "assign", "loss", "inference", "solver")
LOG_FILE = "log.txt"
# One intra-op thread per run: on 2 shared cores, two single-thread runs side by side beat one
# two-thread run (measured: 1.4 s/it with 1 thread vs 4.3 s/it with 2 threads under load).
DEFAULT_JOBS = 2


def yaml_overrides(path: Path, sections: tuple[str, ...] | None = None) -> list[str]:
    """``section.key=value`` strings of a two-level YAML file (only ``sections`` when given)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise DynatssError(f"{path}: not found") from None
    overrides = []
    for section, values in data.items():
        if sections is not None and section not in sections:
            continue
        for key, value in (values or {}).items():
            text = value if isinstance(value, str) else json.dumps(value)
            overrides.append(f"{section}.{key}={text}")
    return overrides


def variant_overrides(variant: Variant, ablation_dir: Path = ABLATION_DIR) -> list[str]:
    """``key.sub=value`` strings of the variant's model/assign/loss/inference settings ([] for a peer)."""
    if variant.peer is None:
        return yaml_overrides(ablation_dir / f"{variant.name}.yaml", VARIANT_SECTIONS)
    return []


def dataset_overrides(name: str, dataset_dir: Path = DATASET_DIR) -> list[str]:
    """``key.sub=value`` strings of configs/experiments/<name>.yaml: the data (and input) settings."""
    path = dataset_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in dataset_dir.glob("*.yaml"))
        raise DynatssError(f"--dataset: no {path} (datasets: {known})")
    return yaml_overrides(path)


def run_command(variant: Variant, *, base_config: Path, seed: int, run_dir: Path, extra: list[str],
                dataset: list[str] = ()) -> list[str]:
    """The command line of one run (our ``dynatss train`` or the peer script), as executed: the base
    config, then the dataset's settings, the variant's, ``extra`` (the command line's), seed and run dir."""
    settings = [*dataset, *variant_overrides(variant), *extra, f"train.seed={seed}", f"train.output_dir={run_dir}"]
    config = os.path.relpath(base_config)  # paths as a reader would type them from the repository root
    if variant.peer is not None:
        return [sys.executable, os.path.relpath(PEERS_SCRIPT), variant.peer, config, *settings]
    # --resume: a run stopped half-way (a stopped grid) continues from its last checkpoint, or starts
    # again from iteration 0 in the same directory (train refuses an existing run otherwise; the grid
    # first sets aside a run with nothing to resume from: set_aside_unresumable).
    return [sys.executable, "-m", "dynatss", "train", config, *settings, "--resume"]


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
    """Run one command with ``threads`` intra-op threads, output appended to run_dir/log.txt (a
    resumed run keeps its first part); write run.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.time()
    with open(run_dir / LOG_FILE, "a") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    info = {"command": shlex.join(command), "threads": threads, "returncode": returncode, "started": started,
            "wall_s": round(time.time() - started, 1), "machine": machine()}
    atomic_write_text(run_dir / RUN_FILE, json.dumps(info, indent=1))
    return info


# --------------------------------------------------------------------------------------------
# The grid


def _anchors_text(scales) -> str:
    return "chosen from the data (auto)" if scales == "auto" else f"{scales[0]:g} x stride"


def _schedule_text(s) -> str:
    if s.epochs is None:
        return f"{s.max_iter} iterations of batch {s.batch_size}"
    return f"{s.epochs:g} epochs (at least {s.min_iter} iterations) of batch {s.batch_size}"


def _setup_text(cfg) -> dict[str, str]:
    m, d, s = cfg.model, cfg.data, cfg.solver
    crop = f", training crops {d.crop_size} px" if d.crop_size else ""
    return {
        "data": f"{d.root} ({d.format}; train `{d.train_split}`, evaluation `{d.val_split}`)",
        "model": f"{m.backbone} ({m.pretrained}) FPN P{m.min_level}-P{m.max_level} {m.fpn_channels} ch, "
                 f"head {m.head_convs} x {m.head_channels} ch, anchors {_anchors_text(m.anchor_scales)}; shorter "
                 f"side {d.min_sizes} (test {d.test_min_size}), longer <= {d.max_size}, flip {d.hflip_prob}{crop}",
        "solver": f"{_schedule_text(s)}, SGD lr {describe_lr(s)}, warm-up "
                  f"{s.warmup_iters} ({s.warmup_method} from {s.warmup_factor:g}), x{s.gamma} at {s.steps}, "
                  f"gradient clipping {s.clip_grad_norm}",
    }


def set_aside_unresumable(run_dir: Path) -> Path | None:
    """Rename a run that cannot be resumed (killed before its first checkpoint, or every checkpoint
    unreadable) to a free sibling ``<name>.unresumable-<n>``, so that the grid starts it anew and
    nothing is deleted; returns the new path, or None when there is no such run. A run that a
    training process still holds is refused in one line (its lock)."""
    if not holds_run(run_dir) or find_resume_point(run_dir / CHECKPOINT_DIR)[0] is not None:
        return None
    with RunDirLock(run_dir):
        aside = next(path for n in range(1, 10_000)
                     if not (path := run_dir.with_name(f"{run_dir.name}.unresumable-{n}")).exists())
        try:
            run_dir.rename(aside)
        except OSError as error:
            raise DynatssError(f"{run_dir}: cannot move the unresumable run aside ({error.strerror})") from None
    (aside / LOCK_FILE).unlink(missing_ok=True)  # the lock moved with the folder; released, it means nothing
    return aside


def archive(run_dir: Path, archive_dir: Path) -> None:
    """Copy the finished run's small files (ARCHIVED_FILES) into the committed results tree."""
    for name in ARCHIVED_FILES:
        atomic_write_text(archive_dir / name, (run_dir / name).read_text())


def run_grid(variants: list[Variant], seeds: list[int], out: Path, archive_root: Path, *, base_config: Path,
             dataset: list[str], extra: list[str], jobs: int, threads: int, max_iter: int) -> list[dict]:
    """Run every (seed, variant) not yet in ``archive_root``, ``jobs`` at a time, seed-major order;
    each finished run is archived at once (so a stopped grid keeps what it finished)."""
    pending = []
    for seed in seeds:
        for variant in variants:
            name = Path(variant.name) / f"seed{seed}"
            if final_metrics(archive_root / name, max_iter) is not None:
                continue
            if final_metrics(out / name, max_iter) is not None:  # finished, not archived yet
                archive(out / name, archive_root / name)
                continue
            command = run_command(variant, base_config=base_config, seed=seed, run_dir=out / name, extra=extra,
                                  dataset=dataset)
            pending.append((command, out / name, archive_root / name))
    print(f"{len(pending)} of {len(seeds) * len(variants)} runs to do, {jobs} at a time", flush=True)

    def one(item: tuple[list[str], Path, Path]) -> dict:
        command, run_dir, archive_dir = item
        aside = set_aside_unresumable(run_dir)
        if aside is not None:
            print(f"{run_dir}: nothing to resume from (no readable checkpoint); moved to {aside}, starting anew",
                  flush=True)
        print(f"start {run_dir}", flush=True)
        info = execute(command, run_dir, threads=threads)
        if final_metrics(run_dir, max_iter) is not None:
            archive(run_dir, archive_dir)
        print(f"done  {run_dir}: exit {info['returncode']} in {info['wall_s'] / 60:.1f} min", flush=True)
        return info

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, pending))


def _start_grid(args, dataset_config: Path, cfg, seeds: list[int], argv: list[str] | None) -> tuple[dict, Path]:
    """Record this invocation in the dataset's grid.json (committed beside its runs)."""
    archive_root = args.results / args.dataset
    grid_path = archive_root / GRID_FILE
    grid = read_json(grid_path) or {}
    invocation = shlex.join(["python", "experiments/ablation.py", *(argv if argv is not None else sys.argv[1:])])
    grid = {**grid, "base_config": os.path.relpath(args.config.resolve(), ROOT),
            "dataset_config": os.path.relpath(dataset_config, ROOT), "max_iter": cfg.solver.max_iter,
            "seeds": sorted(set(grid.get("seeds", [])) | set(seeds)), "setup": _setup_text(cfg),
            "invocations": [*grid.get("invocations", []), invocation]}
    atomic_write_text(grid_path, json.dumps(grid, indent=1))
    return grid, archive_root


def with_resolved_schedule(cfg):
    """``cfg`` with ``solver.epochs`` turned into max_iter and steps as ``train`` does (the final
    iteration of every run of the grid); unchanged when the schedule is given in steps."""
    if cfg.solver.epochs is None:
        return cfg
    train_set = load_split(cfg.data, cfg.data.train_split, verify=True)
    cfg.solver.max_iter, cfg.solver.steps = schedule_in_epochs(cfg.solver, len(train_set.records))
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, for every run")
    parser.add_argument("--dataset", default="bccd", help="configs/experiments/<dataset>.yaml (data settings)")
    parser.add_argument("--variants", default="atss,ciou_qfl_iou,tv_fcos",
                        help=f"comma-separated, from {[v.name for v in VARIANTS]}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--config", type=Path, default=BASE_CONFIG, help="base config (the recipe)")
    parser.add_argument("--out", type=Path, default=Path("runs/grid"), help="scratch root of the run directories")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="committed runs (metrics.jsonl, run.json)")
    parser.add_argument("--doc", type=Path, default=Path("docs/results.md"), help="results document")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    parser.add_argument("--report-only", action="store_true", help="rebuild the document from the committed runs")
    args = parser.parse_args(argv)
    failures = 0
    try:
        if not args.report_only:
            variants = find_variants([n for n in args.variants.split(",") if n])
            seeds = [int(s) for s in args.seeds.split(",") if s]
            dataset_config = DATASET_DIR / f"{args.dataset}.yaml"
            dataset = dataset_overrides(args.dataset)
            cfg = load_config(args.config, [*dataset, *args.overrides])
            if not Path(cfg.data.root).is_dir():
                raise DynatssError(f"{dataset_config}: data.root '{cfg.data.root}' not found from {Path.cwd()} "
                                   "(run from the repository root or override data.root)")
            cfg = with_resolved_schedule(cfg)
            _, archive_root = _start_grid(args, dataset_config, cfg, seeds, argv)
            started = time.time()
            infos = run_grid(variants, seeds, args.out / args.dataset, archive_root, base_config=args.config,
                             dataset=dataset, extra=list(args.overrides), jobs=args.jobs, threads=args.threads,
                             max_iter=cfg.solver.max_iter)
            print(f"{len(infos)} runs in {(time.time() - started) / 60:.1f} min", flush=True)
            failures = sum(1 for info in infos if info["returncode"])
        print(f"results: {write_results(args.results, args.doc)}")
    except DynatssError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
