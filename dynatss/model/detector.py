"""The detector: backbone -> FPN neck -> a dense head (ATSS, GFLV2 or VFNet), plus anchors and the box coder.

``forward`` takes plain 0..255 images (uint8 or float) and normalises them itself, so the data
pipeline and exported models never deal with ImageNet statistics. It returns the head's own outputs
type (dynatss.model.outputs), carrying the anchors and their level grids.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dynatss.model.anchors import AnchorGenerator
from dynatss.model.backbone import Backbone
from dynatss.model.box_coder import BoxCoder
from dynatss.model.gfl_head import GFLHead
from dynatss.model.head import ATSSHead
from dynatss.model.neck import Neck
from dynatss.model.outputs import ATSSOutputs, GFLOutputs, HeadOutputs, VFNetOutputs
from dynatss.model.vfnet_head import VFNetHead

# ImageNet RGB statistics every torchvision classifier was trained with (weights.transforms()).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXEL_MAX = 255.0


class DetectionModel(nn.Module):
    """One-stage detector; ``forward(images [B, 3, H, W] 0..255)`` -> ATSSOutputs, GFLOutputs or
    VFNetOutputs, by the head."""

    def __init__(
        self,
        *,
        backbone: Backbone,
        neck: Neck,
        head: ATSSHead | GFLHead | VFNetHead,
        anchor_generator: AnchorGenerator,
        box_coder: BoxCoder,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.num_classes = head.num_classes
        self.quality = head.quality
        self.strides = list(anchor_generator.strides)
        # Not persistent: constants, not learnt; checkpoints stay free of them.
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * PIXEL_MAX
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * PIXEL_MAX
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] uint8 or float in 0..255 -> ImageNet-normalised float, channels-last in memory.

        Channels-last is the layout of the data loader's batches (a no-op for them) and the faster
        one for the convolutions on the CPU: a contiguous input made inference 1.3x slower
        (docs/benchmarks.md).
        """
        images = images.to(self.pixel_mean.dtype)
        return ((images - self.pixel_mean) / self.pixel_std).contiguous(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> HeadOutputs:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        features = self.neck(self.backbone(self.normalize(images)))  # L maps [B, F, h_l, w_l]
        cls_logits, box_output, extra = self.head(features)
        feature_sizes = [(f.shape[-2], f.shape[-1]) for f in features]
        anchors, num_anchors_per_level = self.anchor_generator(
            (images.shape[-2], images.shape[-1]),
            feature_sizes,
            device=box_output.device,
            # At least float32: half-precision anchors lose whole pixels on large inputs under AMP.
            dtype=torch.promote_types(box_output.dtype, torch.float32),
        )
        assert anchors.shape[0] == cls_logits.shape[1], (anchors.shape, cls_logits.shape)
        # The grids serve the assigner in training; a traced (exported) graph has no use for them.
        grids = None if torch.jit.is_tracing() else self.anchor_generator.level_grids(feature_sizes)
        if isinstance(self.head, GFLHead):  # extra: DGQP logits [B, A]
            return GFLOutputs(cls_logits, box_output, extra, anchors, num_anchors_per_level, self.strides, grids)
        if isinstance(self.head, VFNetHead):  # box_output: the initial, extra: the refined distances [B, A, 4]
            return VFNetOutputs(cls_logits, box_output, extra, anchors, num_anchors_per_level, self.strides, grids)
        return ATSSOutputs(cls_logits, box_output, extra, anchors, num_anchors_per_level, grids, self.box_coder)
