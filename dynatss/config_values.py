"""The allowed values of the config keys, checked when a config is loaded (``load_config``).

One table, :data:`VALUE_RANGES`, maps a dotted key to its :class:`Range`; adding a key to a config
section means adding its line here (keys without a line are only type-checked). A value out of
range fails in one line naming the key and the value, e.g. ``solver.base_lr = -0.01: must be > 0``,
before any data is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from dynatss.errors import DynatssError

# Devices every command accepts (train.device, --device): "auto" is CUDA when present, else CPU;
# "gpu" is another name for "cuda"; "cuda:N" picks a GPU. See dynatss.engine.build.resolve_device.
DEVICE_PATTERN = re.compile(r"auto|cpu|gpu|cuda(:\d+)?")


@dataclass(frozen=True)
class Range:
    """Allowed numbers: ``low``/``high`` bounds (None: unbounded), inclusive unless ``*_open``.

    For a list-valued key every element must be in range, and ``length`` (if set) is the exact
    number of elements (else at least one). ``None`` values (optional keys) are always allowed.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    length: int | None = None

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        def number(value: float) -> str:
            return str(int(value)) if float(value).is_integer() else f"{value:g}"

        if self.high is None:
            return f"{'>' if self.low_open else '>='} {number(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {number(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{number(self.low)}, {number(self.high)}{right}"

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (one phrase), or None."""
        if value is None or isinstance(value, str):  # optional keys; named choices ("auto")
            return None
        if isinstance(value, list):
            if self.length is not None and len(value) != self.length:
                return f"needs exactly {self.length} values"
            if not value:
                return "needs at least one value"
            bad = [v for v in value if not self.contains(v)]
            return f"every value must be {self}" if bad else None
        return None if self.contains(value) else f"must be {self}"


POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)
AT_LEAST_ONE = Range(low=1)
FRACTION = Range(low=0, high=1)
OPEN_FRACTION = Range(low=0, high=1, low_open=True, high_open=True)

# Key -> allowed range. Keys not listed are only type-checked; add a line when adding a key.
VALUE_RANGES: dict[str, Range] = {
    "model.frozen_stages": NON_NEGATIVE,
    "model.fpn_channels": AT_LEAST_ONE,
    "model.head_convs": NON_NEGATIVE,
    "model.head_channels": AT_LEAST_ONE,
    "model.num_classes": AT_LEAST_ONE,
    "model.anchor_scales": POSITIVE,
    "model.anchor_ratios": POSITIVE,
    "model.prior_prob": OPEN_FRACTION,
    "model.box_coder_weights": Range(low=0, low_open=True, length=4),
    "model.reg_max": AT_LEAST_ONE,
    "model.dgqp_topk": AT_LEAST_ONE,
    "model.dgqp_channels": AT_LEAST_ONE,
    "model.star_gradient_mul": FRACTION,
    "model.dcn_levels": Range(low=3, high=5),  # the backbone stages C3..C5
    "assign.topk": AT_LEAST_ONE,
    "assign.pred_weight": NON_NEGATIVE,
    "assign.anchor_weight": NON_NEGATIVE,
    "assign.ignore_iof": FRACTION,
    "assign.max_positives_from": FRACTION,
    "loss.focal_alpha": FRACTION,
    "loss.focal_gamma": NON_NEGATIVE,
    "loss.qfl_beta": NON_NEGATIVE,
    "loss.vfl_alpha": NON_NEGATIVE,
    "loss.vfl_gamma": NON_NEGATIVE,
    "loss.box_weight": NON_NEGATIVE,
    "loss.quality_weight": NON_NEGATIVE,
    "loss.dfl_weight": NON_NEGATIVE,
    "loss.box_refine_weight": NON_NEGATIVE,
    "inference.quality_exponent": NON_NEGATIVE,
    "inference.score_threshold": FRACTION,
    "inference.pre_nms_topk": AT_LEAST_ONE,
    "inference.nms_threshold": FRACTION,
    "inference.max_detections": AT_LEAST_ONE,
    "data.min_sizes": AT_LEAST_ONE,
    "data.max_size": AT_LEAST_ONE,
    "data.test_min_size": AT_LEAST_ONE,
    "data.hflip_prob": FRACTION,
    "data.size_divisibility": AT_LEAST_ONE,
    "data.num_workers": NON_NEGATIVE,
    "data.max_image_pixels": AT_LEAST_ONE,
    "data.crop_size": AT_LEAST_ONE,
    "data.test_batch_size": AT_LEAST_ONE,
    "data.synthetic_train_images": AT_LEAST_ONE,
    "data.synthetic_val_images": NON_NEGATIVE,
    "data.synthetic_image_size": Range(low=32),
    "data.synthetic_seed": NON_NEGATIVE,
    "solver.max_iter": AT_LEAST_ONE,
    "solver.epochs": POSITIVE,
    "solver.min_iter": NON_NEGATIVE,
    "solver.step_fractions": Range(low=0, high=1, high_open=True),
    "solver.batch_size": AT_LEAST_ONE,
    "solver.base_lr": POSITIVE,
    "solver.base_batch_size": AT_LEAST_ONE,
    "solver.bias_lr_factor": NON_NEGATIVE,
    "solver.momentum": Range(low=0, high=1, high_open=True),
    "solver.weight_decay": NON_NEGATIVE,
    "solver.steps": Range(low=0),
    "solver.gamma": POSITIVE,
    "solver.warmup_iters": NON_NEGATIVE,
    "solver.warmup_factor": FRACTION,
    "solver.clip_grad_norm": POSITIVE,
    "solver.ema_decay": OPEN_FRACTION,
    "solver.ema_tau": NON_NEGATIVE,
    "train.seed": Range(low=0, high=2**32 - 1),  # NumPy's seed range
    "train.log_period": AT_LEAST_ONE,
    "train.eval_period": NON_NEGATIVE,
    "train.checkpoint_period": AT_LEAST_ONE,
    "train.keep_last": AT_LEAST_ONE,
}


# Strings that must not be empty (an empty train.output_dir would be the current folder).
NON_EMPTY_STRINGS = ("data.root", "data.train_split", "data.val_split", "train.output_dir")


def _empty_list_allowed(key: str) -> bool:
    return key in ("solver.steps", "solver.step_fractions", "model.dcn_levels")  # no milestones; no deformable stage


def check_values(config: Any) -> None:
    """Check every value of a ``dynatss.config.Config`` against :data:`VALUE_RANGES`, the non-empty
    strings and the device name (typed ``Any``: this table sits below the config it checks)."""
    for key, allowed in VALUE_RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if isinstance(value, list) and not value and _empty_list_allowed(key):
            continue
        problem = allowed.problem(value)
        if problem is not None:
            raise DynatssError(f"{key} = {_show(value)}: {problem}")
    for key in NON_EMPTY_STRINGS:
        section, name = key.split(".")
        if not str(getattr(getattr(config, section), name)).strip():
            raise DynatssError(f"{key} is empty")
    if not DEVICE_PATTERN.fullmatch(str(config.train.device)):
        raise DynatssError(f"train.device = {config.train.device!r}: must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'gpu'")


def _show(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
