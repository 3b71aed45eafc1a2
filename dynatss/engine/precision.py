"""Mixed precision: autocast on CUDA only (bf16 or fp16), losses always in fp32."""

from __future__ import annotations

import contextlib

import torch

from dynatss.config import Config
from dynatss.model.outputs import HeadOutputs


def autocast_context(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``solver.amp`` on CUDA; full precision on the CPU (amp is ignored there)."""
    if device.type != "cuda" or cfg.solver.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.solver.amp == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def float_outputs(outputs: HeadOutputs) -> HeadOutputs:
    """Head outputs (any NamedTuple) in fp32, so assignment, losses and NMS never run in half precision."""
    return type(outputs)(*[t.float() if torch.is_tensor(t) and t.is_floating_point() else t for t in outputs])
