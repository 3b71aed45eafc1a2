"""Backbone: a torchvision ImageNet classifier cut into C3-C5 feature maps (strides 8, 16, 32).

Stages are counted as in mmdetection's ``frozen_stages``: stage 0 is the stem, stages 1-4 are the
four resolution stages (ResNet layer1-4; MobileNetV2 blocks grouped by output stride 4/8/16/32).
``frozen_stages = k`` freezes the stem and stages 1..k (0 freezes nothing); the default 1 is the
usual detection fine-tuning set-up (stem + res2 frozen) together with frozen BatchNorm.
``dcn_levels`` names the ResNet/ResNeXt stages, by the level of the map they output (3, 4, 5 =
layer2-4 = C3-C5, Detectron's res3-res5), whose 3x3 convs become modulated deformable convs
(dynatss/model/dcn.py) carrying the loaded weights: the paper's "-DCN" backbones use (3, 4, 5).
With ``frozen_batchnorm=False`` the BatchNorm layers are ordinary ones: their running statistics
keep updating in training mode, also inside frozen stages (only parameters are frozen).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn
from torchvision import models
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from dynatss.errors import DynatssError
from dynatss.model.dcn import make_deformable
from dynatss.model.weights import load_imagenet_state_dict, load_state_dict_file


@dataclass(frozen=True)
class _Spec:
    """How to cut one torchvision classifier: which module holds the trunk, its C3-C5 taps,
    the child names of each stage (stem first) and the C3-C5 channel counts."""

    trunk: str  # attribute of the classifier holding the trunk ("" = the classifier itself)
    taps: tuple[str, str, str]  # child names whose outputs are C3, C4, C5
    stages: tuple[tuple[str, ...], ...]
    channels: tuple[int, int, int]
    head_prefixes: tuple[str, ...]  # classifier keys a weights file may carry that we drop


_RESNET_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))
_RESNET_TAPS = ("layer2", "layer3", "layer4")
# MobileNetV2 `features` children: 0-1 stride 2, 2-3 stride 4, 4-6 stride 8, 7-13 stride 16,
# 14-18 stride 32 (18 is the final 1x1 conv to 1280 channels, pretrained, kept as C5).
_MOBILENET_STAGES = tuple(
    tuple(str(i) for i in r) for r in (range(0, 2), range(2, 4), range(4, 7), range(7, 14), range(14, 19))
)

SPECS: dict[str, _Spec] = {
    "resnet18": _Spec("", _RESNET_TAPS, _RESNET_STAGES, (128, 256, 512), ("fc.",)),
    "resnet34": _Spec("", _RESNET_TAPS, _RESNET_STAGES, (128, 256, 512), ("fc.",)),
    "resnet50": _Spec("", _RESNET_TAPS, _RESNET_STAGES, (512, 1024, 2048), ("fc.",)),
    "resnet101": _Spec("", _RESNET_TAPS, _RESNET_STAGES, (512, 1024, 2048), ("fc.",)),
    "resnext101_32x8d": _Spec("", _RESNET_TAPS, _RESNET_STAGES, (512, 1024, 2048), ("fc.",)),
    "mobilenet_v2": _Spec("features", ("6", "13", "18"), _MOBILENET_STAGES, (32, 96, 1280), ("classifier.",)),
}
# Backbone levels the trunk can return: C3, C4, C5.
BACKBONE_LEVELS = (3, 4, 5)


def _load_weights(classifier: nn.Module, name: str, pretrained: str | None) -> None:
    """Load ImageNet / local weights into the torchvision classifier (trunk keys must all match)."""
    if pretrained is None:
        return
    if pretrained == "imagenet":
        state, source = load_imagenet_state_dict(name), f"ImageNet weights of {name}"
    else:
        state, source = load_state_dict_file(pretrained), pretrained
    head_prefixes = SPECS[name].head_prefixes
    state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
    expected = {k for k in classifier.state_dict() if not k.startswith(head_prefixes)}
    # FrozenBatchNorm2d has no num_batches_tracked; a file may or may not carry it.
    expected = {k for k in expected if not k.endswith("num_batches_tracked")}
    missing = sorted(expected - state.keys())
    unexpected = sorted(k for k in state.keys() - expected if not k.endswith("num_batches_tracked"))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise DynatssError(
            f"{source}: not a {name} state dict ({len(missing)} missing, {len(unexpected)} unexpected keys, "
            f"e.g. '{example}')"
        )
    try:
        classifier.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        first = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
        raise DynatssError(f"{source}: does not fit {name} ({first})") from None


def _check_dcn_levels(name: str, dcn_levels: tuple[int, ...], frozen_stages: int) -> None:
    if not dcn_levels:
        return
    if SPECS[name].taps != _RESNET_TAPS:
        raise DynatssError(f"model.dcn_levels needs a ResNet/ResNeXt backbone, got model.backbone={name}")
    if len(set(dcn_levels)) != len(dcn_levels) or any(level not in BACKBONE_LEVELS for level in dcn_levels):
        raise DynatssError(
            f"model.dcn_levels must be distinct levels out of {list(BACKBONE_LEVELS)}, got {list(dcn_levels)}"
        )
    # Level l is stage l - 1 (layer{l-1}); in a frozen stage the zero offsets would never train.
    frozen = [level for level in dcn_levels if level - 1 <= frozen_stages]
    if frozen:
        raise DynatssError(
            f"model.dcn_levels {frozen} lie in stages frozen by model.frozen_stages={frozen_stages}: "
            "their offsets would never train"
        )


class Backbone(nn.Module):
    """A torchvision classifier trunk returning an OrderedDict {"c3", "c4", "c5"} (subset by
    ``levels``) of feature maps at strides 8, 16, 32; inputs are ImageNet-normalised images."""

    def __init__(
        self,
        *,
        name: str,
        pretrained: str | None,
        frozen_stages: int = 1,
        frozen_batchnorm: bool = True,
        levels: tuple[int, ...] = BACKBONE_LEVELS,
        dcn_levels: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        if name not in SPECS:
            raise DynatssError(f"unknown backbone '{name}' (choose from {sorted(SPECS)})")
        spec = SPECS[name]
        if not 0 <= frozen_stages < len(spec.stages):
            raise DynatssError(
                f"model.frozen_stages must be in 0..{len(spec.stages) - 1}, got {frozen_stages}"
            )
        if not levels or any(level not in BACKBONE_LEVELS for level in levels):
            raise DynatssError(f"backbone levels must be a subset of {BACKBONE_LEVELS}, got {levels}")
        _check_dcn_levels(name, dcn_levels, frozen_stages)
        norm_layer = FrozenBatchNorm2d if frozen_batchnorm else nn.BatchNorm2d
        classifier = getattr(models, name)(weights=None, norm_layer=norm_layer)
        _load_weights(classifier, name, pretrained)
        for level in dcn_levels:  # after loading: the deformable convs keep the loaded weights
            make_deformable(getattr(classifier, _RESNET_TAPS[level - 3]))
        trunk = getattr(classifier, spec.trunk) if spec.trunk else classifier
        return_layers = {spec.taps[level - 3]: f"c{level}" for level in levels}
        self.body = IntermediateLayerGetter(trunk, return_layers=return_layers)
        self.levels = tuple(levels)
        self.out_channels = [spec.channels[level - 3] for level in levels]
        self._freeze(spec.stages[: frozen_stages + 1] if frozen_stages > 0 else ())

    def _freeze(self, stages: tuple[tuple[str, ...], ...]) -> None:
        for stage in stages:
            for child in stage:
                for parameter in getattr(self.body, child).parameters():
                    parameter.requires_grad_(False)

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """images [B, 3, H, W] normalised -> {"c3": [B, C3, H/8, W/8], ...} for ``levels``."""
        return self.body(images)
