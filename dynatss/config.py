"""Typed configuration: nested dataclasses, YAML files, dotted command-line overrides.

One config system for the whole toolkit. Defaults are the paper's (ATSS / Dynamic ATSS, R50, 1x);
a YAML file overrides them, and ``key.sub=value`` strings override the file. Unknown keys are
rejected with a "did you mean" suggestion, so a typo never silently falls back to a default.
Every value is checked when the config is loaded: its type (numbers in any float notation, also
``1e-4``, which YAML reads as a string) and its range (:mod:`dynatss.config_values`), so a bad value
fails in one line naming the key before any data is read.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dynatss.atomic import atomic_write_text
from dynatss.config_merge import merge_into, parse_override
from dynatss.config_values import check_values
from dynatss.errors import DynatssError

# PIL's decompression-bomb threshold (~89.5 megapixels, e.g. 9459 x 9459): the default limit on the
# pixels of any image dynatss opens (dynatss.data.decode).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
# Detections shown to people (predict, Result.plot, report samples, video) and counted in the
# per-class precision / recall / F1 and the confusion matrix: a final score (class x quality) of at
# least 0.3. AP uses every detection of the inference rule (``inference.score_threshold``, 0.05).
DISPLAY_SCORE_THRESHOLD = 0.3


@dataclass
class ModelConfig:
    """Backbone + FPN + shared ATSS head (paper Fig. 1)."""

    backbone: Literal[
        "resnet18", "resnet34", "resnet50", "resnet101", "resnext101_32x8d", "mobilenet_v2"
    ] = "resnet50"
    # "imagenet": torchvision's weight enum (torch hub cache); a path: a local state dict file;
    # null: random initialisation.
    pretrained: str | None = "imagenet"
    # Stem + first stage frozen, BatchNorm frozen: the usual detection fine-tuning set-up.
    frozen_stages: int = 1
    frozen_batchnorm: bool = True
    # Modulated deformable convs (DCNv2; paper Table IV "-DCN" rows; docs/dcn.md). dcn_levels: the
    # ResNet/ResNeXt stages, named by the level they output (3, 4, 5 = C3-C5 = layer2-4), whose 3x3
    # convs become deformable, keeping their ImageNet weights ([] = none; ATSS's DCN: [3, 4, 5]).
    # head_dcn: the last conv of the ATSS head's classification and regression towers is deformable.
    dcn_levels: list[int] = field(default_factory=list)
    head_dcn: bool = False
    fpn_channels: int = 256
    # Pyramid levels P3..P7 as ATSS; P6/P7 are computed from P5.
    min_level: int = 3
    max_level: int = 7
    head_convs: int = 4
    head_channels: int = 256
    num_classes: int = 80
    # One square anchor per location of size 8 x stride (ATSS). "auto": chosen by ``train`` from the
    # training boxes before the first step (dynatss.model.anchor_choice) and saved resolved.
    anchor_scales: list[float] | Literal["auto"] = field(default_factory=lambda: [8.0])
    anchor_ratios: list[float] = field(default_factory=lambda: [1.0])
    # "centerness" (ATSS) or "iou" (the paper: predicts the PIoU of the decoded box).
    quality: Literal["centerness", "iou"] = "iou"
    prior_prob: float = 0.01
    # The box coder's (wx, wy, ww, wh): deltas dx = wx (gx - ax) / aw, ... (Faster R-CNN / ATSS).
    box_coder_weights: list[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])
    # The head (paper Table V, docs/heads.md): "atss" (the paper's), "gfl" (GFLV2: distribution
    # regression + DGQP), "vfnet" (VarifocalNet: IACS + star-shaped box refinement).
    head: Literal["atss", "gfl", "vfnet"] = "atss"
    # GFL: distance bins 0..reg_max strides (GFL: 16); DGQP top-k and hidden width (GFLV2: 4, 64).
    reg_max: int = 16
    dgqp_topk: int = 4
    dgqp_channels: int = 64
    # VFNet: share of the gradient the star offsets pass on to the initial box (VFNet: 0.1).
    star_gradient_mul: float = 0.1
    # The boxes the GFL and VFNet heads predict before any training. "anchor": each location's
    # anchor (GFL's distributions centred on half the anchor size, VFNet's distance unit half the
    # anchor size), so PIoU = AIoU at the start and the combined-IoU assignment starts as ATSS, as
    # with the ATSS head (issue 12). "official": mmdetection's (GFL: uniform distributions, 8
    # strides per side; VFNet: one anchor size per side), boxes 2-4x the anchor.
    box_init: Literal["anchor", "official"] = "anchor"
    # VFNet's star deformable convs: "uniform" (mmcv DeformConv2d's default, kaiming-uniform as
    # torch convs) or "normal" (N(0, 0.01), the VFNet authors' code).
    star_dcn_init: Literal["uniform", "normal"] = "uniform"


@dataclass
class AssignConfig:
    """Label assignment (paper Sec. III.B, Tables II-III)."""

    # "atss": anchor IoUs only; "dynamic": combined IoUs (PIoU + AIoU); "piou": predicted IoUs only.
    mode: Literal["atss", "dynamic", "piou"] = "dynamic"
    topk: int = 9
    pred_weight: float = 1.0
    anchor_weight: float = 1.0
    # Table III schedules: "up" multiplies the PIoU weight by iter/max_iter,
    # "down" multiplies the AIoU weight by 1 - iter/max_iter.
    pred_schedule: Literal["constant", "up"] = "constant"
    anchor_schedule: Literal["constant", "down"] = "constant"
    # Which pyramid levels may hold a GT's combined-IoU positives. "all" (the paper): any level.
    # "anchor": only the levels its anchors choose (see dynatss.assign.atss.anchor_levels), so the
    # anchors decide the scale and the predictions only which locations of it; a no-op for "atss".
    levels: Literal["all", "anchor"] = "all"
    # How many combined-IoU positives a GT keeps. "threshold" (the paper): every candidate at or
    # above the threshold. "atss": at most as many as plain ATSS gives it (AIoU >= mean + std, at
    # least 1), those with the highest combined IoU: the anchors decide how many, the predictions
    # which (issue 17: combined IoUs give more positives per GT than ATSS, with lower AIoUs).
    max_positives: Literal["threshold", "atss"] = "threshold"
    # Training progress (iteration / max_iter) from which ``max_positives`` applies; before it the
    # paper's rule. 0 (the default): the whole run. A late start keeps the paper's extra positives
    # while the model is still learning to classify and caps them once its boxes are good.
    max_positives_from: float = 0.0
    # Anchors lying mostly inside a crowd / difficult box are ignored in the classification loss.
    ignore_iof: float = 0.5


@dataclass
class LossConfig:
    """Classification, box and quality losses (paper Sec. III.C)."""

    classification: Literal["focal", "qfl", "vfl"] = "qfl"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    qfl_beta: float = 2.0
    vfl_alpha: float = 0.75
    vfl_gamma: float = 2.0
    box_weight: float = 2.0
    quality_weight: float = 1.0
    # GFL head: weight of the distribution focal loss (mmdetection GFL: 0.25).
    dfl_weight: float = 0.25
    # VFNet head: weight of the refined boxes' GIoU (mmdetection VFNet: 2.0; initial boxes: box_weight 1.5).
    box_refine_weight: float = 2.0
    # ATSS head with model.quality=iou: where the IoU branch is trained. "positives": the positives
    # only (the paper, official code); "candidates": every ATSS candidate of a GT, towards the IoU of
    # its predicted box with that GT, so that boxes which miss learn a low score (issue 17);
    # "candidates_zero": every candidate, those the assignment rejected towards 0; "all": every
    # anchor, QFL towards the PIoU at the positives and 0 elsewhere (GFL's joint score, VFNet's IACS).
    quality_targets: Literal["positives", "candidates", "candidates_zero", "all"] = "positives"
    # Weights of the positives' box losses. "quality": the official code's (ATSS head: the quality
    # target, centerness or the PIoU with the IoU branch; GFLV2: the highest joint score, also for
    # the DFL; VFNet: the IoU of the initial and of the refined boxes); "uniform": every positive
    # weighs 1, so that the boxes fitted worst are not fitted least (issue 17).
    box_weighting: Literal["quality", "uniform"] = "quality"


@dataclass
class InferenceConfig:
    score_threshold: float = 0.05
    # What ``score_threshold`` and the per-level top-k candidates are chosen on. "cls": the
    # classification probability alone, then ranked by cls x quality (the official ATSS and
    # Dynamic ATSS code, mmdetection's ATSS); "score": the product cls x quality itself (mmdetection
    # GFLV2, whose classification output is already the joint score). The reported score is
    # cls x quality either way.
    threshold_on: Literal["cls", "score"] = "cls"
    # score = cls x quality ** quality_exponent: 1 the official product, 0 the class probability
    # alone (QFL already trains it towards the IoU), 0.5 a softer quality factor (issue 17).
    quality_exponent: float = 1.0
    pre_nms_topk: int = 1000
    nms_threshold: float = 0.6
    max_detections: int = 100


@dataclass
class DataConfig:
    # "coco", "voc", "yolo" or "synthetic"; root is the dataset folder (ignored for synthetic).
    format: Literal["coco", "voc", "yolo", "synthetic"] = "coco"
    root: str = "data/coco"
    train_split: str = "train2017"
    val_split: str = "val2017"
    # Resize keeping aspect ratio: shorter side drawn from min_sizes per image, longer <= max_size.
    min_sizes: list[int] = field(default_factory=lambda: [800])
    max_size: int = 1333
    test_min_size: int = 800
    hflip_prob: float = 0.5
    color_jitter: bool = False
    # Training only: a random crop_size x crop_size window of each resized image (null: none). For
    # large photos of small objects: train at a scale where they are big enough without paying for
    # the whole image; evaluation sees the whole resized image. Objects mostly outside a crop
    # become ignore regions (dynatss.data.transforms.CROP_MIN_VISIBLE).
    crop_size: int | None = None
    # Images per evaluation batch, per process. 1 (mmdetection's and detectron2's default): each
    # image is padded only to its own size, so its detections do not depend on which images share
    # its batch (a 640x512 photo batched with a 910x512 one would otherwise be scored with a black
    # band beside it); on a CPU one image at a time is also the fastest per image.
    test_batch_size: int = 1
    size_divisibility: int = 128
    group_by_aspect_ratio: bool = True
    num_workers: int = 2
    # Images with more pixels are refused wherever they are opened (reader, loader, predict, report).
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # Synthetic data (the demo): number of images per split and generator seed.
    synthetic_train_images: int = 256
    synthetic_val_images: int = 64
    synthetic_image_size: int = 320
    synthetic_seed: int = 0


@dataclass
class SolverConfig:
    """SGD schedule; the defaults are the paper's 1x: 90k iterations, batch 16, lr 0.01."""

    max_iter: int = 90_000
    # A schedule in epochs (null: max_iter and steps as written). When set, ``train`` replaces
    # max_iter by epochs x training images / batch_size (rounded to 10 steps, at least min_iter)
    # and steps by step_fractions of it, before the first step, and saves the resolved values.
    epochs: float | None = None
    min_iter: int = 0
    step_fractions: list[float] = field(default_factory=lambda: [2 / 3, 8 / 9])
    batch_size: int = 16  # total over all processes
    # The learning rate at ``base_batch_size`` images per step (the paper: 0.01 at 16). With
    # ``auto_scale_lr`` the rate used is base_lr x batch_size / base_batch_size (the linear scaling
    # rule, Goyal et al.; mmdetection's auto_scale_lr); false uses base_lr at any batch size.
    base_lr: float = 0.01
    base_batch_size: int = 16
    auto_scale_lr: bool = True
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: Literal["step", "cosine"] = "step"
    steps: list[int] = field(default_factory=lambda: [60_000, 80_000])
    gamma: float = 0.1
    warmup_iters: int = 500
    warmup_factor: float = 1.0 / 3.0
    # "linear": from warmup_factor to 1 over warmup_iters (mmdetection, detectron2); "constant":
    # warmup_factor throughout the warm-up, then 1 (the official ATSS / Dynamic ATSS code).
    warmup_method: Literal["linear", "constant"] = "linear"
    # Learning-rate multiplier of the biases (the official ATSS code: 2.0, maskrcnn-benchmark's
    # BIAS_LR_FACTOR; mmdetection: 1.0).
    bias_lr_factor: float = 1.0
    clip_grad_norm: float | None = None
    amp: Literal["none", "bf16", "fp16"] = "none"
    # Exponential moving average of the weights (off when unset); its decay ramps up as
    # ema_decay x (1 - exp(-updates / ema_tau)), as ultralytics, YOLOX and mmdetection's
    # ExpMomentumEMA (2000). 0: the constant decay from the first update.
    ema_decay: float | None = None
    ema_tau: float = 2000.0


@dataclass
class TrainConfig:
    output_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda" (or "gpu"), "cuda:N"
    log_period: int = 20
    eval_period: int = 5000  # 0: no evaluation during training (engine helper)
    checkpoint_period: int = 5000
    keep_last: int = 3
    # torch.use_deterministic_algorithms: bit-exact resume/reruns at some speed cost (engine helper).
    deterministic: bool = False


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    assign: AssignConfig = field(default_factory=AssignConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# --------------------------------------------------------------------------------------------
# Loading (the type-checked merge of mappings into the dataclasses: dynatss.config_merge)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file at ``path``, then ``key.sub=value`` overrides."""
    config = Config()
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise DynatssError(f"{path}: config file not found") from None
        except OSError as error:
            raise DynatssError(f"{path}: cannot read the config ({error.strerror})") from None
        except UnicodeDecodeError:
            raise DynatssError(f"{path}: not a text file (expected a YAML config)") from None
        except yaml.YAMLError as error:
            raise DynatssError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise DynatssError(f"{path}: expected a mapping at the top level")
        try:
            merge_into(config, data)
        except DynatssError as error:
            raise DynatssError(f"{path}: {error}") from None
    for text in overrides:
        merge_into(config, parse_override(text))
    return validate_config(config)


def apply_overrides(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """A copy of ``config`` with ``key.sub=value`` overrides applied (checked like a YAML file)."""
    config = copy.deepcopy(config)
    for text in overrides:
        merge_into(config, parse_override(text))
    return validate_config(config)


def config_from_dict(data: Any, source: str | Path) -> Config:
    """The Config saved with a run (a plain dict) back as a Config, checked like a YAML file."""
    config = Config()
    if not isinstance(data, dict):
        raise DynatssError(f"{source}: the saved config is not a mapping")
    try:
        merge_into(config, data)
        validate_config(config)
    except DynatssError as error:
        raise DynatssError(f"{source}: saved config: {error}") from None
    return config


def validate_config(config: Config) -> Config:
    """Check every value's range and the device name (see :mod:`dynatss.config_values`)."""
    check_values(config)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (saved beside every run), atomically."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
