"""Modulated deformable convolution (DCNv2, Zhu et al., CVPR 2019) for the paper's "-DCN" models
(Table IV): the 3 x 3 convs of ResNet stages C3-C5 and the last conv of the ATSS head towers.

A deformable conv samples each of its k x k kernel points at a learned offset from the regular
grid and weights each sample by a learned modulation mask. Offsets and masks are predicted from
the same input by an ordinary conv with the deformable conv's kernel, stride, padding and
dilation, so there is one set per output location; offsets are (dy, dx) per kernel point, kernel
points row-major. On CUDA (and for ONNX) the convolution is ``torchvision.ops.deform_conv2d``;
on CPU it is the same maths written with grid_sample (:func:`deform_conv2d_by_sampling`), whose
backward is several times faster there than torchvision's CPU kernel (benchmarks/dcn.py).

Starting point: the offset/mask predictor is zero-initialised (mmcv's DCNv2 convention), so every
offset starts at 0. With mmcv's ``mask = sigmoid(logit)`` every sample would start weighted by 0.5,
halving each pretrained conv's response; here ``mask = 2 sigmoid(logit)`` (``MASK_SCALE``), which
is exactly 1 at the start and still spans (0, 2). A deformable conv made from a conv therefore
computes that conv (to float rounding) until training moves the predictor: the DCN backbone
starts as the ImageNet network. (The official ATSS code initialises its offset convs randomly and
its masks start near 0.5; docs/dcn.md.)

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
    ) -> None:
        super().__init__()
        self.num_points = kernel_size[0] * kernel_size[1]
        self.stride, self.padding, self.dilation = stride, padding, dilation
        # 2 offsets (dy, dx) and 1 mask logit per kernel point, all 0 at the start.
        self.weight = nn.Parameter(torch.zeros(3 * self.num_points, in_channels, *kernel_size))
        self.bias = nn.Parameter(torch.zeros(3 * self.num_points))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """features [B, C_in, H, W] -> offsets [B, 2 K, H', W'] in input cells, masks [B, K, H', W'] in (0, 2),
        for the K = k x k kernel points (one offset group, as DCNv2 in ATSS and mmdetection)."""
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
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=bias,
        )
        self.offset_mask = OffsetMaskPredictor(
            in_channels=in_channels, kernel_size=self.kernel_size, stride=self.stride,
            padding=self.padding, dilation=self.dilation,
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
        if features.is_cuda or torch.onnx.is_in_onnx_export():
            # torchvision's CUDA kernel; the exporter turns it into ONNX DeformConv.
            return deform_conv2d(
                features, offsets, self.weight, self.bias, stride=self.stride, padding=self.padding,
                dilation=self.dilation, mask=masks,
            )
        return deform_conv2d_by_sampling(
            features, offsets, masks, self.weight, self.bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask_scale={MASK_SCALE}"


def deform_conv2d_by_sampling(
    features: Tensor,
    offsets: Tensor,
    masks: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    *,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """``deform_conv2d(features, offsets, weight, bias, stride, padding, dilation, mask=masks)`` with
    one offset group, written as bilinear sampling (grid_sample) and a matrix product.

    The same maths as torchvision's kernel (samples outside the map are 0); on CPU its backward is
    several times faster than torchvision's CPU kernel (docs/dcn.md), so the CPU path uses it.
    features [B, C_in, H, W]; offsets [B, 2 K, H', W'] ((dy, dx) per kernel point, row-major);
    masks [B, K, H', W']; weight [C_out, C_in / groups, k_h, k_w] -> [B, C_out, H', W'].
    """
    batch, in_channels, height, width = features.shape
    out_channels, group_channels, kernel_h, kernel_w = weight.shape
    groups, points = in_channels // group_channels, kernel_h * kernel_w
    out_h, out_w = offsets.shape[-2:]
    offsets = offsets.view(batch, points, 2, out_h, out_w)
    arange = dict(dtype=features.dtype, device=features.device)
    # Kernel point (ky, kx) of output (i, j) sits at (i s - p + ky d, j s - p + kx d) on the regular grid.
    kernel_y = (torch.arange(kernel_h, **arange) * dilation[0]).repeat_interleave(kernel_w).view(1, points, 1, 1)
    kernel_x = (torch.arange(kernel_w, **arange) * dilation[1]).repeat(kernel_h).view(1, points, 1, 1)
    rows = (torch.arange(out_h, **arange) * stride[0] - padding[0]).view(1, 1, out_h, 1)
    cols = (torch.arange(out_w, **arange) * stride[1] - padding[1]).view(1, 1, 1, out_w)
    sample_y = rows + kernel_y + offsets[:, :, 0]  # [B, K, H', W'] in input pixels
    sample_x = cols + kernel_x + offsets[:, :, 1]
    # grid_sample with align_corners=False puts pixel i at normalised (2 i + 1) / size - 1.
    grid = torch.stack(((2 * sample_x + 1) / width - 1, (2 * sample_y + 1) / height - 1), dim=-1)
    sampled = F.grid_sample(
        features, grid.view(batch, points * out_h, out_w, 2), mode="bilinear", padding_mode="zeros",
        align_corners=False,
    )  # [B, C_in, K H', W']
    columns = sampled.view(batch, in_channels, points, out_h, out_w) * masks.view(batch, 1, points, out_h, out_w)
    columns = columns.view(batch, groups, group_channels * points, out_h * out_w)  # (c_in, k) major
    out = weight.reshape(groups, out_channels // groups, group_channels * points) @ columns  # [B, g, C_out/g, H'W']
    out = out.view(batch, out_channels, out_h, out_w)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


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
