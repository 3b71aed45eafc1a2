"""The training loop, top to bottom: set up, then one function that steps, logs, checkpoints, evaluates.

Extension points are explicit arguments of :func:`train` (``criterion_override``), not hooks.
Resume is exact on CPU: the checkpoint holds every state the loop updates (see state.py), the
data loader restarts at ``start_iter`` and the lr schedule is a pure function of the iteration.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dynatss.config import Config, save_config, validate_config
from dynatss.data.datasets import DatasetRead
from dynatss.data.loader import build_test_loader, build_train_loader
from dynatss.data.problems import summarize_problems
from dynatss.engine import checkpoint as ckpt
from dynatss.engine.build import (
    build_criterion,
    build_model,
    load_split,
    prepare_synthetic,
    resolve_device,
    with_num_classes,
)
from dynatss.engine.distributed import (
    DistributedContext,
    any_rank,
    barrier,
    cleanup_distributed,
    global_rank,
    mean_over_ranks,
    per_rank_batch_size,
    setup_distributed,
)
from dynatss.engine.evaluate import EvalResult, evaluate, format_percent, format_table, write_detections
from dynatss.engine.from_data import resolve_from_data
from dynatss.engine.lr_schedule import describe_lr
from dynatss.engine.precision import autocast_context, float_outputs
from dynatss.engine.resume import resume_training
from dynatss.engine.run_dir import check_run_dir, start_run_dir
from dynatss.engine.run_lock import RunDirLock
from dynatss.engine.run_logger import RunLogger, WindowAverage
from dynatss.engine.state import TrainState
from dynatss.errors import DynatssError
from dynatss.losses.positives import LossOutput


@dataclass
class TrainResult:
    run_dir: Path
    iteration: int
    final_eval: EvalResult | None
    best_ap: float


def seed_everything(seed: int, deterministic: bool) -> None:
    """Same seed on every rank: identical initial weights, reproducible runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def _train_batches(records, cfg: Config, ctx: DistributedContext, device: torch.device, start_iter: int):
    """The infinite stream of training batches, positioned at ``start_iter``."""
    kwargs = dict(
        batch_size=per_rank_batch_size(cfg.solver.batch_size, ctx.world_size),
        seed=cfg.train.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        pin_memory=device.type == "cuda",
    )
    return iter(build_train_loader(records, cfg.data, start_iter=start_iter, **kwargs))


def _print(ctx: DistributedContext, text: str) -> None:
    if ctx.is_main:
        print(text, flush=True)


def train(
    cfg: Config,
    *,
    resume: bool = False,
    overwrite: bool = False,
    criterion_override: Callable[..., LossOutput] | None = None,
) -> TrainResult:
    """Train ``cfg`` into ``cfg.train.output_dir`` (the run dir); returns the final evaluation.

    A run dir that already holds a run needs ``resume`` (continue it) or ``overwrite`` (replace it).
    Nothing is written before the config, the data, the model and the resume checkpoint are checked.
    ``criterion_override`` replaces the configured DetectionCriterion (tests, experiments).
    Raises DynatssError if a loss becomes NaN/inf (the last good checkpoint is kept).
    """
    validate_config(cfg)
    # One process per run directory, for the whole run (issue 18); torchrun's rank 0 owns it.
    with RunDirLock(cfg.train.output_dir, enabled=global_rank() == 0) as lock:
        check_run_dir(Path(cfg.train.output_dir), resume=resume, overwrite=overwrite)
        device_type = resolve_device(cfg.train.device).type
        ctx = setup_distributed(device_type)
        try:
            device = resolve_device(cfg.train.device, ctx.local_rank)
            return _train(cfg, ctx, device, resume, overwrite, criterion_override, lock)
        finally:
            cleanup_distributed()


def _read_splits(cfg: Config, ctx: DistributedContext) -> tuple[DatasetRead, DatasetRead]:
    """The training split with every image decoded once (rank 0 first, then the others from its
    cache), and the validation split (headers only; unreadable images are skipped when met)."""
    if cfg.data.format == "synthetic":
        prepare_synthetic(cfg.data, is_main=ctx.is_main)
    train_set = load_split(cfg.data, cfg.data.train_split, verify=True) if ctx.is_main else None
    barrier()
    train_set = train_set or load_split(cfg.data, cfg.data.train_split, verify=True)
    val_set = load_split(cfg.data, cfg.data.val_split)
    for name, split in (("train", train_set), ("val", val_set)):
        _print(ctx, f"data {name} ({cfg.data.format}:{cfg.data.root}/{getattr(cfg.data, name + '_split')}): "
               f"{len(split.records)} images; {summarize_problems(split.problems)}")
    where = f"{cfg.data.root} split '{cfg.data.train_split}'"
    if not train_set.records:
        raise DynatssError(f"{where}: no usable training images")
    if not any((~r.ignore).any() for r in train_set.records):
        raise DynatssError(f"{where}: no boxes in the training images; nothing to learn")
    if val_set.records and not any((~r.ignore).any() for r in val_set.records):
        _print(ctx, f"note: validation split '{cfg.data.val_split}' has no boxes; its AP will be n/a")
    return train_set, val_set


def _train(cfg, ctx, device, resume, overwrite, criterion_override, lock) -> TrainResult:
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    train_set, val_set = _read_splits(cfg, ctx)
    meta = train_set.meta
    cfg = with_num_classes(cfg, meta)
    cfg, notes = resolve_from_data(cfg, train_set.records, meta)
    for note in notes:
        _print(ctx, note)
    cfg.data.root = str(Path(cfg.data.root).resolve())  # the run records where its data is
    run_dir = Path(cfg.train.output_dir)

    per_rank = per_rank_batch_size(cfg.solver.batch_size, ctx.world_size)
    amp = cfg.solver.amp if device.type == "cuda" else "none (solver.amp needs CUDA)"
    _print(ctx, f"device {device} x {ctx.world_size} process(es), {per_rank} images each per step, amp {amp}; "
           f"lr {describe_lr(cfg.solver)}")
    model = build_model(cfg, device)
    criterion = criterion_override or build_criterion(cfg, model)
    state = TrainState.create(model, cfg, device)
    if resume and not resume_training(state, cfg, run_dir, say=lambda text: _print(ctx, text)):
        return TrainResult(run_dir=run_dir, iteration=state.iteration, final_eval=None, best_ap=state.best_ap)
    if ctx.is_main:  # every check passed: only now touch the run directory
        lock.hold(create=True)
        start_run_dir(run_dir, overwrite=overwrite)
        save_config(cfg, run_dir / "config.yaml")
    barrier()
    train_model = model
    if ctx.world_size > 1:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    batches = _train_batches(train_set.records, cfg, ctx, device, state.iteration)
    test_loader = build_test_loader(
        val_set.records, cfg.data, batch_size=cfg.data.test_batch_size,
        rank=ctx.rank, world_size=ctx.world_size,
    )
    logger = RunLogger(run_dir, enabled=ctx.is_main, max_iter=cfg.solver.max_iter, start_iter=state.iteration)
    try:
        final = _loop(cfg, ctx, device, state, train_model, criterion, batches, test_loader, val_set, meta, logger)
    finally:
        logger.close()
    if final is not None and ctx.is_main:
        write_detections(final.detections, run_dir / "eval" / "detections.json")
        print(format_table(final), flush=True)
    return TrainResult(run_dir=run_dir, iteration=state.iteration, final_eval=final, best_ap=state.best_ap)


def _loop(cfg, ctx, device, state, train_model, criterion, batches, test_loader, val_set, meta, logger):
    """Step until ``solver.max_iter``; log, checkpoint and evaluate on their periods and at the end."""
    solver, run = cfg.solver, cfg.train
    checkpoint_dir = Path(run.output_dir) / "checkpoints"
    autocast = autocast_context(cfg, device)
    window = WindowAverage()
    final: EvalResult | None = None
    train_model.train()
    while state.iteration < solver.max_iter:
        started = time.perf_counter()
        batch = next(batches).to(device, non_blocking=True)
        lr = state.optimizer.param_groups[0]["lr"]
        losses = _step(state, train_model, criterion, batch, cfg, autocast, device)
        state.iteration += 1
        window.add({"lr": lr, **losses, "seconds": time.perf_counter() - started})
        logger.step()
        done = state.iteration == solver.max_iter
        if state.iteration % run.log_period == 0 or done:
            values = mean_over_ranks({key: float(value) for key, value in window.pop().items()}, device)
            # Step time only (data + forward + backward), not evaluation or checkpointing.
            values["images_per_s"] = solver.batch_size / max(values.pop("seconds"), 1e-9)
            logger.train(state.iteration, values)
        # Evaluate before checkpointing so the checkpoint carries the updated best AP.
        if run.eval_period > 0 and (state.iteration % run.eval_period == 0 or done):
            final = _evaluate(cfg, ctx, device, state, test_loader, val_set, meta, logger, checkpoint_dir)
        if ctx.is_main and (state.iteration % run.checkpoint_period == 0 or done):
            ckpt.save_periodic(state.checkpoint(cfg, meta), checkpoint_dir, keep_last=run.keep_last)
    return final


def _step(state, train_model, criterion, batch, cfg, autocast, device) -> dict[str, float | torch.Tensor]:
    """One SGD step; returns the logged values. Stops the run on a NaN/inf loss before any update."""
    with autocast:
        outputs = train_model(batch.images)
    result = criterion(float_outputs(outputs), batch, state.iteration / cfg.solver.max_iter)
    values = _logged_values(result)
    if any_rank(not math.isfinite(values["loss"]), device):
        raise DynatssError(
            f"loss is {values['loss']} at iteration {state.iteration + 1}; stopped "
            f"(last good checkpoint kept in {cfg.train.output_dir}/checkpoints; try a lower solver.base_lr)"
        )
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(result.total).backward()
    # The gradient norm is logged on every run (a spike shows an unstable recipe); with
    # solver.clip_grad_norm set, gradients above it are scaled down to it.
    state.scaler.unscale_(state.optimizer)
    max_norm = cfg.solver.clip_grad_norm if cfg.solver.clip_grad_norm is not None else math.inf
    grad_norm = nn.utils.clip_grad_norm_(state.model.parameters(), max_norm)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    # A tensor: summed over the log window on the device and fetched once per log line (_loop),
    # so the step keeps its single host-device sync.
    values["grad_norm"] = grad_norm.detach()
    return values


def _logged_values(result: LossOutput) -> dict[str, float]:
    """Loss, its terms and the assignment statistics as numbers, in ONE host-device sync.

    The NaN check needs the loss on the host before the update anyway; fetching every logged value
    in the same transfer saves one sync per value (each a stall of the GPU queue).
    """
    device = result.total.device
    tensors = {"loss": result.total.detach(), **result.terms, **result.stats}
    numbers = torch.stack([torch.as_tensor(v, device=device).float().reshape(()) for v in tensors.values()])
    return dict(zip(tensors, numbers.tolist()))


def _evaluate(cfg, ctx, device, state, test_loader, val_set, meta, logger, checkpoint_dir) -> EvalResult | None:
    """Evaluate the (EMA) weights on the validation split; keep best.pth by AP (main process)."""
    if not val_set.records:
        logger.message(f"eval skipped: split '{cfg.data.val_split}' has no images")
        return None
    result = evaluate(state.eval_model, test_loader, val_set.records, meta, cfg, device)
    if ctx.is_main:
        ap = result.metrics["AP"]
        logger.eval(state.iteration, result.metrics, result.per_class)
        logger.message(
            f"iter {state.iteration}: AP {format_percent(ap)}  AP50 {format_percent(result.metrics['AP50'])}"
        )
        if not math.isnan(ap) and ap > state.best_ap:
            state.best_ap = ap
            ckpt.save_checkpoint(state.best_checkpoint(cfg, meta, result.metrics), checkpoint_dir / ckpt.BEST_NAME)
    return result
