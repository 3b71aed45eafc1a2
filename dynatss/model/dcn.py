"""Modulated deformable convolution (DCNv2, Zhu et al., CVPR 2019) for the paper's "-DCN" models
(Table IV): the 3 x 3 convs of ResNet stages C3-C5 and the last conv of the ATSS head towers.

A deformable conv samples each of its k x k kernel points at a learned offset from the regular
grid and weights each sample by a learned modulation mask. Offsets and masks are predicted from
the same input by an ordinary conv with the deformable conv's kernel, stride, padding and
dilation, so there is one set per output location. The convolution itself is
``torchvision.ops.deform_conv2d``; offsets are (dy, dx) per kernel point, kernel points row-major.

Starting point: the offset/mask predictor is zero-initialised (mmcv's DCNv2 convention), so every
offset starts at 0. With mmcv's ``mask = sigmoid(logit)`` every sample would start weighted by 0.5,
halving each pretrained conv's response; here ``mask = 2 sigmoid(logit)`` (``MASK_SCALE``), which
is exactly 1 at the start and still spans (0, 2). A deformable conv made from a conv therefore
computes exactly that conv until training moves the predictor: the DCN backbone starts as the
ImageNet network. (The official ATSS code initialises its offset convs randomly and its masks
start near 0.5; docs/dcn.md.)

ONNX: the TorchScript exporter knows no ``torchvision::deform_conv2d``; :func:`onnx_opset_for`
registers a symbolic that emits ONNX ``DeformConv`` (opset 19), whose layout is torchvision's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.onnx.symbolic_helper import parse_args
from torchvision.ops import deform_conv2d

# mask = MASK_SCALE * sigmoid(logit): 1 when the zero-initialised predictor outputs 0.
MASK_SCALE = 2.0
# The first ONNX opset with DeformConv.
DEFORM_CONV_OPSET = 19


class OffsetMaskPredictor(nn.Module):
    """An ordinary conv predicting, per output location, the offsets and masks of a deformable conv.

    Holds its weight and bias directly rather than being an ``nn.Conv2d``: heads initialise every
    ``nn.Conv2d`` they contain with N(0, 0.01) (ATSSHead), which must not overwrite these zeros.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        offset_groups: int,
    ) -> None:
        super().__init__()
        self.num_points = offset_groups * kernel_size[0] * kernel_size[1]
        self.stride, self.padding, self.dilation = stride, padding, dilation
        # 2 offsets (dy, dx) and 1 mask logit per kernel point and offset group, all 0 at the start.
        self.weight = nn.Parameter(torch.zeros(3 * self.num_points, in_channels, *kernel_size))
        self.bias = nn.Parameter(torch.zeros(3 * self.num_points))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """features [B, C_in, H, W] -> offsets [B, 2 P, H', W'] in input cells, masks [B, P, H', W'] in (0, 2),
        for P = offset_groups x k x k kernel points."""
        out = F.conv2d(features, self.weight, self.bias, self.stride, self.padding, self.dilation)
        offsets, mask_logits = out.split((2 * self.num_points, self.num_points), dim=1)
        return offsets, MASK_SCALE * mask_logits.sigmoid()


class ModulatedDeformConv2d(nn.Conv2d):
    """A drop-in ``nn.Conv2d`` whose sampling grid is deformed by predicted offsets and masks (DCNv2).

    ``weight`` and ``bias`` have the plain conv's names and shapes, so a plain conv's weights (and
    state-dict keys) carry over; ``offset_mask`` holds the zero-initialised predictor.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        offset_groups: int = 1,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=bias,
        )
        self.offset_groups = offset_groups
        self.offset_mask = OffsetMaskPredictor(
            in_channels=in_channels, kernel_size=self.kernel_size, stride=self.stride,
            padding=self.padding, dilation=self.dilation, offset_groups=offset_groups,
        )

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> ModulatedDeformConv2d:
        """A deformable conv that computes exactly ``conv`` at the start, sharing its weight and bias."""
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"only zero padding given as numbers can be deformable, got {conv}")
        deformable = cls(
            in_channels=conv.in_channels, out_channels=conv.out_channels, kernel_size=conv.kernel_size,
            stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
            bias=conv.bias is not None,
        )
        deformable.weight = conv.weight
        deformable.bias = conv.bias
        deformable.offset_mask.to(conv.weight)
        return deformable

    def forward(self, features: Tensor) -> Tensor:
        """features [B, C_in, H, W] -> [B, C_out, H', W'] (H', W' those of the plain conv)."""
        offsets, masks = self.offset_mask(features)
        return deform_conv2d(
            features, offsets, self.weight, self.bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, mask=masks,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, offset_groups={self.offset_groups}, mask_scale={MASK_SCALE}"


def make_deformable(module: nn.Module) -> int:
    """Replace every 3 x 3 ``nn.Conv2d`` inside ``module`` (in place) by a :class:`ModulatedDeformConv2d`
    sharing its weights; return how many were replaced. 1 x 1 convs (ResNet's projections) stay."""
    targets = [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Conv2d and child.kernel_size == (3, 3)
    ]
    for parent, name, conv in targets:
        setattr(parent, name, ModulatedDeformConv2d.from_conv(conv))
    return len(targets)


@parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
def _deform_conv2d_symbolic(
    g, features, weight, offsets, mask, bias, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
    groups, offset_groups, use_mask,
):
    """torchvision::deform_conv2d -> ONNX DeformConv (inputs X, W, offset, B, mask)."""
    inputs = (features, weight, offsets, bias, mask) if use_mask else (features, weight, offsets, bias)
    return g.op(
        "DeformConv", *inputs, strides_i=[stride_h, stride_w], pads_i=[pad_h, pad_w, pad_h, pad_w],
        dilations_i=[dilation_h, dilation_w], group_i=groups, offset_group_i=offset_groups,
    )


def onnx_opset_for(model: nn.Module, opset: int) -> int:
    """The ONNX opset to export ``model`` with: ``opset``, raised to DEFORM_CONV_OPSET when the model
    has deformable convs (after registering the exporter's symbolic for them)."""
    if not any(isinstance(module, ModulatedDeformConv2d) for module in model.modules()):
        return opset
    torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv2d_symbolic, DEFORM_CONV_OPSET)
    return max(opset, DEFORM_CONV_OPSET)
