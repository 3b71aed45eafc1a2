"""What ``--resume`` continues from, and what it may change (issue 18): resume cannot destroy a run.

- **The newest readable checkpoint.** ``last.pth`` and the periodic ``model_XXXXXXX.pth`` are the
  candidates; the one with the highest iteration that loads is used, and the log line names it and
  the newer ones passed over when it is not ``last.pth``. A run directory that holds a run but no
  readable checkpoint is refused (``--overwrite`` replaces it); one that holds no run starts at
  iteration 0. So no resume starts over a run: ``metrics.jsonl`` loses only the lines the killed
  process wrote after the checkpoint, which the resumed run writes again.
- **The same training.** Every setting that decides what is trained (model, data, assignment,
  loss, learning rate, schedule) must equal the checkpoint's, compared after ``train`` has resolved
  what it takes from the data (issue 17: ``anchor_scales: auto``, ``solver.epochs``), so the same
  command always resumes. Changes are refused in one line listing them. ``solver.max_iter`` may
  grow (the schedule, a pure function of the iteration and ``max_iter``, follows it); at or below the
  checkpoint's iteration the run is complete and nothing is changed. How the run is executed and
  watched (:data:`RUN_CONTROL_KEYS`) may change, and config.yaml records it.
- **best.pth** is replaced only by a model whose AP beats the one in best.pth itself, even when the
  checkpoint resumed from predates that evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynatss.config import Config, config_to_dict
from dynatss.engine import checkpoint as ckpt
from dynatss.engine.run_dir import CHECKPOINT_DIR, holds_run
from dynatss.engine.state import TrainState
from dynatss.errors import DynatssError

# Settings that may differ on --resume: how the run is executed and watched, not what it learns.
RUN_CONTROL_KEYS = frozenset({
    "train.output_dir", "train.device", "train.deterministic", "train.log_period", "train.eval_period",
    "train.checkpoint_period", "train.keep_last", "data.num_workers",
})  # fmt: skip
# Requests that train resolves into max_iter and steps (issue 17): those are compared instead.
SCHEDULE_REQUESTS = frozenset({"solver.epochs", "solver.min_iter", "solver.step_fractions"})
MAX_ITER_KEY = "solver.max_iter"
# Differences named in a refusal; the rest are counted (a whole other config is a long list).
_SHOWN_CHANGES = 8


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a resume continues from, and the newer candidates that could not be read."""

    path: Path
    checkpoint: dict[str, Any]
    passed_over: tuple[str, ...] = ()

    @property
    def iteration(self) -> int:
        return int(self.checkpoint["iter"])


def find_resume_point(checkpoint_dir: Path) -> tuple[ResumePoint | None, list[str]]:
    """The readable checkpoint with the highest iteration in ``checkpoint_dir`` (None if there is
    none), and why each newer candidate was passed over (``"last.pth not found"``,
    ``"last.pth not readable: ..."``)."""
    last = checkpoint_dir / ckpt.LAST_NAME
    periodic = [(iteration, path) for iteration, path in reversed(ckpt.periodic_checkpoints(checkpoint_dir))]
    candidates = ([(None, last)] if last.exists() else []) + periodic  # last.pth first: the newest
    found: ResumePoint | None = None
    unreadable: list[str] = [] if last.exists() else [f"{last.name} not found"]
    for named_iteration, path in candidates:
        if found is not None and named_iteration is not None and named_iteration <= found.iteration:
            break  # the periodic checkpoints are newest first: none of the rest is newer
        checkpoint = _readable_checkpoint(path, unreadable)
        if checkpoint is not None and (found is None or int(checkpoint["iter"]) > found.iteration):
            found = ResumePoint(path, checkpoint)
    if found is None:
        return None, unreadable
    return ResumePoint(found.path, found.checkpoint, tuple(unreadable)), unreadable


def _readable_checkpoint(path: Path, unreadable: list[str]) -> dict[str, Any] | None:
    try:
        checkpoint = ckpt.load_checkpoint(path)
    except DynatssError as error:
        unreadable.append(f"{path.name} not readable: {str(error).removeprefix(f'{path}: ')}")
        return None
    if isinstance(checkpoint.get("iter"), bool) or not isinstance(checkpoint.get("iter"), int):
        unreadable.append(f"{path.name} not readable: not a training checkpoint (no iteration)")
        return None
    return checkpoint


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: Any) -> str:
    """A setting as it is written in YAML: ``null``, ``true``, ``[96]``, ``0.01``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _difference(key: str, old: Any, new: Any) -> str:
    return f"{key} {_show(old)} -> {_show(new)}"


def _same(key: str, saved: Any, new: Any) -> bool:
    if key == "data.root" and isinstance(saved, str) and isinstance(new, str):
        return Path(saved).resolve() == Path(new).resolve()  # runs of earlier versions saved it relative
    return saved == new


def changed_settings(saved: Mapping[str, Any], cfg: Config) -> list[str]:
    """``"solver.base_lr 0.01 -> 0.5"`` for each training setting of ``cfg`` that differs from the
    checkpoint's config ``saved`` (keys only one of them knows, from another version, are skipped)."""
    old, new = _flatten(saved), _flatten(config_to_dict(cfg))
    skipped = RUN_CONTROL_KEYS | SCHEDULE_REQUESTS | {MAX_ITER_KEY}
    return [
        _difference(key, old[key], value)
        for key, value in new.items()
        if key in old and key not in skipped and not _same(key, old[key], value)
    ]


def best_ap_on_disk(checkpoint_dir: Path) -> float:
    """The AP recorded in ``best.pth`` (-1 when there is none or it cannot be read)."""
    path = checkpoint_dir / ckpt.BEST_NAME
    try:
        ap = ckpt.load_checkpoint(path)["metrics"]["AP"] if path.is_file() else -1.0
    except (DynatssError, KeyError, TypeError):
        return -1.0
    return float(ap) if isinstance(ap, (int, float)) and not isinstance(ap, bool) else -1.0


def resume_training(state: TrainState, cfg: Config, run_dir: Path, say: Callable[[str], None]) -> bool:
    """Restore ``state`` for ``--resume`` by the rules of this module; False when the run is
    already complete at ``cfg.solver.max_iter`` (then nothing is to be trained or written).

    A refusal (no readable checkpoint in a run, other training settings, a shorter schedule, a
    checkpoint that does not fit the model) is a one-line DynatssError; nothing has been written.
    """
    point, unreadable = find_resume_point(run_dir / CHECKPOINT_DIR)
    if point is None:
        if holds_run(run_dir):
            reasons = "; ".join(unreadable) or "no checkpoint"
            raise DynatssError(
                f"{run_dir}: no readable checkpoint to resume from ({reasons}); nothing was changed. "
                "Start the run anew with --overwrite instead of --resume, or choose another --output-dir"
            )
        say(f"resume: {run_dir} holds no run yet; starting from iteration 0")
        return True
    saved = point.checkpoint.get("config")
    if isinstance(saved, Mapping):
        _check_settings(saved, cfg, point, run_dir, say)
    _restore(state, point)
    passed = f", the newest readable checkpoint ({'; '.join(point.passed_over)})" if point.passed_over else ""
    if cfg.solver.max_iter <= point.iteration:
        say(f"resume: {run_dir} is complete at iteration {point.iteration} (solver.max_iter "
            f"{cfg.solver.max_iter}); nothing to train, nothing changed")  # fmt: skip
        return False
    state.best_ap = max(state.best_ap, best_ap_on_disk(run_dir / CHECKPOINT_DIR))
    say(f"resume: continuing from {point.path} at iteration {point.iteration}{passed}")
    return True


def _check_settings(saved: Mapping[str, Any], cfg: Config, point: ResumePoint, run_dir: Path,
                    say: Callable[[str], None]) -> None:  # fmt: skip
    """Refuse other training settings, and a schedule shortened but not below the checkpoint."""
    changes = changed_settings(saved, cfg)
    old, new = _flatten(saved), _flatten(config_to_dict(cfg))
    if changes:
        listed = ", ".join(changes[:_SHOWN_CHANGES]) + (
            f" and {len(changes) - _SHOWN_CHANGES} more" if len(changes) > _SHOWN_CHANGES else "")
        raise DynatssError(
            f"{run_dir}: --resume with other training settings than the run's ({listed}); "
            "resume with the run's own (its config.yaml; solver.max_iter may grow), or train a new run "
            f"(another --output-dir, or --overwrite){_epochs_hint(old, new)}"
        )
    saved_max_iter = old.get(MAX_ITER_KEY, cfg.solver.max_iter)
    if point.iteration < cfg.solver.max_iter < saved_max_iter:
        raise DynatssError(
            f"{run_dir}: --resume with solver.max_iter {saved_max_iter} -> {cfg.solver.max_iter}: a run's schedule "
            f"can only be extended (or end where it is, at iteration {point.iteration})"
        )
    watched = [_difference(key, old[key], new[key]) for key in sorted(RUN_CONTROL_KEYS - {"train.output_dir"})
               if key in old and old[key] != new[key]]  # fmt: skip
    if cfg.solver.max_iter > saved_max_iter:
        extended = _difference(MAX_ITER_KEY, saved_max_iter, cfg.solver.max_iter)
        watched.insert(0, f"{extended} (extended; the schedule follows)")
    if watched and cfg.solver.max_iter > point.iteration:
        say(f"resume: changed {', '.join(watched)}")


def _epochs_hint(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """How to extend a schedule in epochs, when its decay steps are what moved: the steps are
    fractions of max_iter, so more epochs would move the decays already passed (issue 17)."""
    if old.get("solver.epochs") is None or old.get("solver.steps") == new.get("solver.steps"):
        return ""
    return (f"; to extend a schedule in epochs, give solver.epochs=null solver.max_iter=N "
            f"solver.steps={_show(old['solver.steps']).replace(' ', '')}")  # fmt: skip


def _restore(state: TrainState, point: ResumePoint) -> None:
    """Load ``point`` into ``state``; a checkpoint that does not fit is one line naming the misfit."""
    path, checkpoint = point.path, point.checkpoint
    mismatch = ckpt.state_dict_mismatch(state.model, checkpoint["model"])
    if mismatch is not None:
        raise DynatssError(f"{path}: cannot resume: the model differs from this config ({mismatch})")
    try:
        state.restore(checkpoint)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        entry = error.args[0] if isinstance(error, KeyError) and error.args else None
        detail = f"no '{entry}' entry" if entry else (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DynatssError(f"{path}: cannot resume this run from it ({detail})") from None
