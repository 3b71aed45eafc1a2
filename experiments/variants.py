"""The rows of the results tables: our detector with configs/ablations/<name>.yaml, or a torchvision peer."""

from __future__ import annotations

from dataclasses import dataclass

from dynatss.errors import DynatssError


@dataclass(frozen=True)
class Variant:
    """A table row: our detector with configs/ablations/<name>.yaml, or a torchvision ``peer``."""

    name: str
    label: str
    peer: str | None = None
    # A one-change diagnosis of issue 17 (docs/results.md lists it, README's summary table does not).
    diagnostic: bool = False


VARIANTS = (
    Variant("atss", "ATSS (AIoUs, focal, centerness)"),
    Variant("atss_uniform", "ATSS, uniform box weights"),
    Variant("atss_ema", "ATSS, weights averaged (EMA)", diagnostic=True),
    Variant("atss_ciou", "ATSS+CIoU"),
    Variant("atss_qfl", "ATSS+QFL"),
    Variant("atss_qfl_uniform", "ATSS+QFL, uniform box weights", diagnostic=True),
    Variant("atss_qfl_iou_uniform", "ATSS+QFL+IoU branch, uniform box weights (the recipe on ATSS's assignment)",
            diagnostic=True),
    Variant("atss_vfl", "ATSS+VFL"),
    Variant("piou_only", "PIoU only"),
    Variant("ciou_qfl", "CIoU+QFL"),
    Variant("ciou_vfl", "CIoU+VFL"),
    Variant("ciou_qfl_iou", "CIoU+QFL+IoU branch (Dynamic ATSS)"),
    Variant("ciou_qfl_iou_uniform", "CIoU+QFL+IoU branch, uniform box weights (the recipe before the late cap)"),
    Variant("ciou_qfl_iou_uniform_ema", "CIoU+QFL+IoU branch, uniform box weights, weights averaged (EMA)",
            diagnostic=True),
    Variant("ciou_qfl_iou_cand", "CIoU+QFL+IoU branch on candidates", diagnostic=True),
    Variant("ciou_qfl_iou_candzero", "CIoU+QFL+IoU branch on candidates, rejected to 0", diagnostic=True),
    Variant("ciou_qfl_iou_all", "CIoU+QFL+IoU branch on all anchors (QFL)", diagnostic=True),
    Variant("ciou_qfl_iou_p05", "CIoU (PIoU weight 0.5)+QFL+IoU branch", diagnostic=True),
    Variant("ciou_qfl_iou_lvl", "CIoU (levels from anchors)+QFL+IoU branch"),
    Variant("ciou_qfl_iou_cap", "CIoU (at most ATSS's count per GT)+QFL+IoU branch", diagnostic=True),
    Variant("ciou_qfl_iou_uniform_cap", "CIoU (at most ATSS's count per GT)+QFL+IoU branch, uniform box weights",
            diagnostic=True),
    Variant("ciou_qfl_iou_uniform_cap50",
            "CIoU (ATSS's count per GT from 50 %)+QFL+IoU branch, uniform box weights (Dynamic ATSS, the recipe)"),
    Variant("ciou_qfl_iou_uniform_cap50_ema", "the recipe, weights averaged (EMA ramped to 0.98)", diagnostic=True),
    Variant("ciou_qfl_iou_uniform_cap76", "CIoU (ATSS's count per GT from 76 %)+QFL+IoU branch, uniform box weights",
            diagnostic=True),
    Variant("ciou_vfl_iou", "CIoU+VFL+IoU branch"),
    Variant("gflv2", "GFLV2 (Table V)"),
    Variant("gflv2_ciou", "GFLV2+CIoU (Table V)"),
    Variant("vfnet", "VFNet (Table V)"),
    Variant("vfnet_ciou", "VFNet+CIoU (Table V)"),
    Variant("gflv2_ciou_lvl", "GFLV2+CIoU, levels from anchors"),
    Variant("vfnet_ciou_lvl", "VFNet+CIoU, levels from anchors"),
    Variant("gflv2_uniform", "GFLV2, uniform box weights", diagnostic=True),
    Variant("gflv2_ciou_uniform", "GFLV2+CIoU, uniform box weights", diagnostic=True),
    Variant("vfnet_uniform", "VFNet, uniform box weights", diagnostic=True),
    Variant("vfnet_ciou_uniform", "VFNet+CIoU, uniform box weights", diagnostic=True),
    Variant("gflv2_ciou_uniform_cap50", "GFLV2+CIoU (ATSS's count per GT from 50 %), uniform box weights",
            diagnostic=True),
    Variant("vfnet_ciou_uniform_cap50", "VFNet+CIoU (ATSS's count per GT from 50 %), uniform box weights",
            diagnostic=True),
    Variant("gflv2_ciou_uniform_cap50_lvl",
            "GFLV2+CIoU (levels from anchors, ATSS's count per GT from 50 %), uniform box weights",
            diagnostic=True),
    Variant("vfnet_ciou_uniform_cap50_lvl",
            "VFNet+CIoU (levels from anchors, ATSS's count per GT from 50 %), uniform box weights",
            diagnostic=True),
    Variant("tv_fcos", "torchvision FCOS", peer="fcos"),
    Variant("tv_retinanet", "torchvision RetinaNet", peer="retinanet"),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}


def find_variants(names: list[str]) -> list[Variant]:
    unknown = [name for name in names if name not in VARIANTS_BY_NAME]
    if unknown:
        raise DynatssError(f"--variants: unknown {unknown} (choose from {list(VARIANTS_BY_NAME)})")
    return [VARIANTS_BY_NAME[name] for name in names]
