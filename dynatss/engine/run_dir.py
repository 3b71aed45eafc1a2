"""The run directory's rules: never train over a run by accident, write nothing before all checks pass.

``dynatss train`` into a directory that already holds a run (its ``config.yaml``, ``metrics.jsonl``
or a checkpoint) refuses, unless ``--resume`` (continue it) or ``--overwrite`` (delete the run's
files first) says what to do: run directories are named by the user (``--output-dir``), so they are
not renumbered behind their back as ultralytics does. :func:`check_run_dir` runs before anything is
written; :func:`start_run_dir` after every other check (config, data, model, resume checkpoint)
has passed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dynatss.atomic import check_writable_folder, remove_stale_temporaries
from dynatss.errors import DynatssError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
# Everything the engine and `dynatss report` write into a run directory; --overwrite deletes these
# and nothing else (a demo's cached data/, a launcher's log.txt stay).
RUN_ENTRIES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR, "tb", "eval", "report", "report.md", "report.html")


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds (part of) a training run."""
    checkpoints = run_dir / CHECKPOINT_DIR
    return (
        (run_dir / CONFIG_FILE).exists()
        or (run_dir / METRICS_FILE).exists()
        or (checkpoints.is_dir() and any(checkpoints.glob("*.pth")))
    )


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, in one line, a run directory that cannot be used as asked; writes nothing."""
    if resume and overwrite:
        raise DynatssError("--resume and --overwrite exclude each other: continue the run or replace it")
    if run_dir.exists() and not run_dir.is_dir():
        raise DynatssError(f"{run_dir}: train.output_dir is a file, not a folder")
    check_writable_folder(run_dir, what="run directory (train.output_dir)")
    if holds_run(run_dir) and not (resume or overwrite):
        raise DynatssError(
            f"{run_dir}: already holds a training run; continue it with --resume, replace it with "
            "--overwrite, or choose another --output-dir"
        )


def clear_run(run_dir: Path) -> None:
    """Delete the files of the run in ``run_dir`` (--overwrite), leaving anything else there."""
    for name in RUN_ENTRIES:
        path = run_dir / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError as error:
            raise DynatssError(f"{path}: cannot delete the old run's file ({error.strerror})") from None


def start_run_dir(run_dir: Path, *, overwrite: bool) -> Path:
    """Create ``run_dir/checkpoints`` (after clearing the old run if ``overwrite``) and delete the
    half-written temporary files a killed run left there; returns the checkpoint folder."""
    if overwrite:
        clear_run(run_dir)
    checkpoints = run_dir / CHECKPOINT_DIR
    try:
        checkpoints.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DynatssError(f"{checkpoints}: cannot create the folder ({error.strerror})") from None
    remove_stale_temporaries(checkpoints)
    remove_stale_temporaries(run_dir)
    return checkpoints
