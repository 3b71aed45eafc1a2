"""Everything training updates, in one place: model, optimizer, lr schedule, AMP scaler, EMA.

``TrainState.checkpoint()`` and ``TrainState.restore()`` are the two halves of an exact resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel

from dynatss.config import Config, config_to_dict
from dynatss.data.records import DatasetMeta
from dynatss.engine.checkpoint import capture_rng_state, meta_to_dict, restore_rng_state
from dynatss.engine.lr_schedule import build_lr_scheduler
from dynatss.engine.optimizer import build_optimizer


def ema_decay_at(update: Tensor, decay: float, tau: float) -> Tensor:
    """The decay of the ``update``-th EMA update (1, 2, ...): ``decay * (1 - exp(-update / tau))``.

    The ramp of ultralytics, YOLOX and mmdetection's ExpMomentumEMA (there ``tau`` = 2000): early
    updates nearly copy the weights, so the average forgets the initial ones. ``tau = 0``: the
    constant ``decay`` from the second update on.
    """
    if tau == 0:
        return torch.full_like(update, decay, dtype=torch.float32)
    return decay * (1 - torch.exp(-update.to(torch.float32) / tau))


def build_ema(model: nn.Module, decay: float | None, tau: float) -> AveragedModel | None:
    """Exponential moving average of the weights (and buffers), or None when ``decay`` is unset.

    The first update copies the weights (``AveragedModel``); the ``k``-th after it moves the average
    towards the weights by ``1 - ema_decay_at(k + 1, decay, tau)``.
    """
    if decay is None:
        return None

    @torch.no_grad()
    def update(ema_tensors: list[Tensor], model_tensors: list[Tensor], num_averaged: Tensor) -> None:
        step = 1 - ema_decay_at(num_averaged + 1, decay, tau)
        if torch.is_floating_point(ema_tensors[0]):
            torch._foreach_lerp_(ema_tensors, model_tensors, step.to(ema_tensors[0].device))
        else:  # integer buffers (BatchNorm's num_batches_tracked): rounded as they must stay integers
            for ema_tensor, model_tensor in zip(ema_tensors, model_tensors, strict=True):
                ema_tensor.copy_(torch.round(ema_tensor + (model_tensor - ema_tensor) * step))

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


@dataclass
class TrainState:
    """``model`` is the plain detector (DDP wraps it separately); ``iteration`` counts finished steps."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None
    iteration: int = 0
    best_ap: float = -1.0

    @classmethod
    def create(cls, model: nn.Module, cfg: Config, device: torch.device) -> TrainState:
        optimizer = build_optimizer(model, cfg.solver)
        # GradScaler only for fp16 on CUDA; bf16 has fp32's range and needs no loss scaling.
        use_scaler = cfg.solver.amp == "fp16" and device.type == "cuda"
        return cls(
            model=model,
            optimizer=optimizer,
            scheduler=build_lr_scheduler(optimizer, cfg.solver),
            scaler=torch.amp.GradScaler(device.type, enabled=use_scaler),
            ema=build_ema(model, cfg.solver.ema_decay, cfg.solver.ema_tau),
        )

    @property
    def eval_model(self) -> nn.Module:
        """The weights to evaluate and keep as best: the EMA's when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def checkpoint(self, cfg: Config, meta: DatasetMeta) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "iter": self.iteration,
            "best_ap": self.best_ap,
            "rng": capture_rng_state(),
            "config": config_to_dict(cfg),
            "meta": meta_to_dict(meta),
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        if self.ema is not None and checkpoint.get("ema"):
            self.ema.load_state_dict(checkpoint["ema"])
        self.iteration = int(checkpoint["iter"])
        self.best_ap = float(checkpoint.get("best_ap", -1.0))
        restore_rng_state(checkpoint["rng"])
        self._apply_schedule()

    def _apply_schedule(self) -> None:
        """Set each group's rate to this config's schedule at the restored step. The optimizer state
        holds the rate the checkpoint's schedule gave; they differ when --resume extends a schedule
        that depends on max_iter (cosine). The same product LambdaLR computes, so an unchanged
        schedule gives the same bits."""
        step = self.scheduler.last_epoch
        rates = [base * factor(step) for base, factor in zip(self.scheduler.base_lrs, self.scheduler.lr_lambdas)]
        for group, rate in zip(self.optimizer.param_groups, rates):
            group["lr"] = rate
        self.scheduler._last_lr = rates  # what get_last_lr() reports

    def best_checkpoint(self, cfg: Config, meta: DatasetMeta, metrics: dict[str, float]) -> dict[str, Any]:
        """best.pth: only the evaluated weights (EMA's if enabled), enough to predict and export."""
        return {
            "model": self.eval_model.state_dict(),
            "iter": self.iteration,
            "metrics": dict(metrics),
            "config": config_to_dict(cfg),
            "meta": meta_to_dict(meta),
        }
