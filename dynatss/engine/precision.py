"""Mixed precision: autocast on CUDA only (bf16 or fp16), losses always in fp32."""

from __future__ import annotations

import contextlib

import torch

from dynatss.config import Config
from dynatss.model.inference import float_outputs as float_outputs  # the training step's, re-exported


def autocast_context(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``solver.amp`` on CUDA; full precision on the CPU (amp is ignored there)."""
    if device.type != "cuda" or cfg.solver.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.solver.amp == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)
