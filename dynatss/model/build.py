"""Build the detector from ``ModelConfig`` with plain constructor calls."""

from __future__ import annotations

from dynatss.config import ModelConfig
from dynatss.errors import DynatssError
from dynatss.model.anchors import AnchorGenerator
from dynatss.model.backbone import Backbone
from dynatss.model.box_coder import BoxCoder
from dynatss.model.detector import DetectionModel
from dynatss.model.folded_bn import fold_frozen_batchnorm
from dynatss.model.gfl_head import GFLHead
from dynatss.model.head import GROUP_NORM_GROUPS, ATSSHead
from dynatss.model.neck import Neck
from dynatss.model.vfnet_head import VFNetHead

# The heads (paper Table V, docs/heads.md) besides the ATSS head.
HEADS = ("gfl", "vfnet")

# Levels the neck can emit. The backbone gives C3-C5; P6/P7 come from P5 (both or neither).
MIN_LEVELS = (3, 4, 5)
MAX_LEVELS = (5, 7)


def _check(cfg: ModelConfig) -> None:
    if cfg.min_level not in MIN_LEVELS:
        raise DynatssError(f"model.min_level must be one of {MIN_LEVELS}, got {cfg.min_level}")
    if cfg.max_level not in MAX_LEVELS:
        raise DynatssError(f"model.max_level must be one of {MAX_LEVELS}, got {cfg.max_level}")
    # GroupNorm(32) needs >= 2 channels per group: a 1x1 P7 map of a single small image would
    # otherwise leave one value per group (torch refuses to normalise it).
    if cfg.head_channels % GROUP_NORM_GROUPS or cfg.head_channels < 2 * GROUP_NORM_GROUPS:
        raise DynatssError(
            f"model.head_channels must be a multiple of {GROUP_NORM_GROUPS} and at least "
            f"{2 * GROUP_NORM_GROUPS}, got {cfg.head_channels}"
        )
    if cfg.num_classes < 1:
        raise DynatssError(f"model.num_classes must be >= 1, got {cfg.num_classes}")
    if not 0.0 < cfg.prior_prob < 1.0:
        raise DynatssError(f"model.prior_prob must be in (0, 1), got {cfg.prior_prob}")
    if cfg.anchor_scales == "auto":
        raise DynatssError("model.anchor_scales = auto is chosen from the training data by `train`; "
                           "give the scale (e.g. [8.0]) to build a model without training it")
    if any(s <= 0 for s in cfg.anchor_scales) or any(r <= 0 for r in cfg.anchor_ratios):
        raise DynatssError("model.anchor_scales and model.anchor_ratios must be positive")
    if len(cfg.box_coder_weights) != 4:
        raise DynatssError(f"model.box_coder_weights needs 4 numbers, got {cfg.box_coder_weights}")
    if cfg.head_dcn and cfg.head != "atss":
        raise DynatssError(f"model.head_dcn is for the ATSS head (model.head=atss), got model.head={cfg.head}")
    if cfg.head_dcn and cfg.head_convs < 1:
        raise DynatssError("model.head_dcn needs a tower to make deformable: model.head_convs must be >= 1")


def build_detector(cfg: ModelConfig) -> DetectionModel:
    """Backbone (C{min_level}..C5) -> FPN (P{min_level}..P{max_level}) -> ATSS head.

    min_level 4 feeds only C4 and C5 to the FPN, so no stride-8 level exists anywhere.
    """
    _check(cfg)
    levels = list(range(cfg.min_level, cfg.max_level + 1))
    backbone = Backbone(
        name=cfg.backbone,
        pretrained=cfg.pretrained,
        frozen_stages=cfg.frozen_stages,
        frozen_batchnorm=cfg.frozen_batchnorm,
        levels=tuple(range(cfg.min_level, 6)),
        dcn_levels=tuple(cfg.dcn_levels),
    )
    # The same function and state dict, fewer passes over the activations (model/folded_bn.py).
    fold_frozen_batchnorm(backbone)
    neck = Neck(
        in_channels=backbone.out_channels, out_channels=cfg.fpn_channels, with_p6p7=cfg.max_level == 7
    )
    anchor_generator = AnchorGenerator(
        strides=[2**level for level in levels], scales=cfg.anchor_scales, ratios=cfg.anchor_ratios
    )
    box_coder = BoxCoder(weights=tuple(cfg.box_coder_weights))
    if cfg.head != "atss":
        head = build_head(cfg, head=cfg.head, strides=anchor_generator.strides)
        return DetectionModel(
            backbone=backbone, neck=neck, head=head, anchor_generator=anchor_generator, box_coder=box_coder
        )
    head = ATSSHead(
        in_channels=cfg.fpn_channels,
        num_classes=cfg.num_classes,
        num_anchors=anchor_generator.num_anchors_per_location,
        num_levels=len(levels),
        num_convs=cfg.head_convs,
        channels=cfg.head_channels,
        prior_prob=cfg.prior_prob,
        quality=cfg.quality,
        deformable_tower=cfg.head_dcn,
    )
    return DetectionModel(
        backbone=backbone, neck=neck, head=head, anchor_generator=anchor_generator, box_coder=box_coder
    )


def build_head(cfg: ModelConfig, *, head: str, strides: list[int]) -> GFLHead | VFNetHead:
    """The GFLV2 (``head="gfl"``) or VFNet (``"vfnet"``) head for ``cfg``'s FPN levels."""
    if len(cfg.anchor_scales) != 1 or len(cfg.anchor_ratios) != 1:
        raise DynatssError(
            f"model.head '{head}' predicts one box per location: give one anchor scale and one ratio, "
            f"got scales {cfg.anchor_scales} and ratios {cfg.anchor_ratios}"
        )
    common = dict(in_channels=cfg.fpn_channels, num_classes=cfg.num_classes, num_convs=cfg.head_convs,
                  channels=cfg.head_channels, prior_prob=cfg.prior_prob)
    # model.box_init "anchor": the first boxes are the anchors (half an anchor per side).
    anchor_half_size = cfg.anchor_scales[0] / 2  # in strides
    if head == "gfl":
        return GFLHead(num_levels=len(strides), reg_max=cfg.reg_max, dgqp_topk=cfg.dgqp_topk,
                       dgqp_channels=cfg.dgqp_channels,
                       initial_distance=anchor_half_size if cfg.box_init == "anchor" else None, **common)
    if head == "vfnet":
        if cfg.head_convs < 1:
            raise DynatssError("model.head_convs must be >= 1 for the VFNet head")
        return VFNetHead(strides=strides,
                         distance_scale=anchor_half_size if cfg.box_init == "anchor" else cfg.anchor_scales[0],
                         gradient_mul=cfg.star_gradient_mul, star_dcn_init=cfg.star_dcn_init, **common)
    raise DynatssError(f"model.head must be one of {('atss', *HEADS)}, got {head!r}")
