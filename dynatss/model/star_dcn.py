"""VFNet's star-shaped box feature representation (Zhang et al., VarifocalNet, Sec. 3.3).

A 3 x 3 deformable convolution whose nine sampling points are moved onto the star shape given by
an initial box (l, t, r, b) around the location (x, y): the centre (x, y), the four edge points
(x - l, y), (x + r, y), (x, y - t), (x, y + b) and the four corners (x - l, y - t), (x + r, y - t),
(x - l, y + b), (x + r, y + b). Kernel point (ky, kx) of the regular grid sits at
(y + (ky - 1) s, x + (kx - 1) s) for feature stride s, so its offset is the star point minus that,
in units of s; torchvision's layout is (dy, dx) per kernel point, kernel points row-major.

The convolution itself is torchvision.ops.deform_conv2d on a GPU. On a CPU (where torchvision's
backward is slow) and while exporting to ONNX (no opset-17 operator) the same sampling is written
with grid_sample (bilinear, zero outside the map, exactly DCN's interpolation) and a matrix
product; a test checks that both agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

KERNEL_SIZE = 3
NUM_POINTS = KERNEL_SIZE * KERNEL_SIZE
# Regular 3 x 3 grid, row-major: (dy, dx) of kernel point k relative to the centre, in cells.
_GRID_DY = (-1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0)
_GRID_DX = (-1.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0)


def star_offsets(ltrb: Tensor, stride: float) -> Tensor:
    """Deformable-conv offsets putting the 9 kernel points on the star of each box.

    ltrb: [B, 4, h, w] distances (l, t, r, b) in input pixels from each location's centre.
    Returns offsets [B, 18, h, w] in feature cells, (dy, dx) per kernel point, row-major.
    """
    left, top, right, bottom = (ltrb / stride).unbind(dim=1)  # [B, h, w] each
    zero = torch.zeros_like(left)
    star_dy = torch.stack((-top, -top, -top, zero, zero, zero, bottom, bottom, bottom), dim=1)
    star_dx = torch.stack((-left, zero, right, -left, zero, right, -left, zero, right), dim=1)
    grid_dy = star_dy.new_tensor(_GRID_DY).view(1, NUM_POINTS, 1, 1)
    grid_dx = star_dx.new_tensor(_GRID_DX).view(1, NUM_POINTS, 1, 1)
    offsets = torch.stack((star_dy - grid_dy, star_dx - grid_dx), dim=2)  # [B, 9, 2, h, w]
    return offsets.flatten(1, 2)  # [B, 18, h, w]


def deform_conv_by_sampling(features: Tensor, offsets: Tensor, weight: Tensor) -> Tensor:
    """deform_conv2d (3 x 3, stride 1, padding 1, no bias) written with grid_sample, for ONNX.

    features: [B, C_in, h, w]; offsets: [B, 18, h, w]; weight: [C_out, C_in, 3, 3] -> [B, C_out, h, w].
    """
    batch, channels, height, width = features.shape
    offsets = offsets.view(batch, NUM_POINTS, 2, height, width)
    rows = torch.arange(height, dtype=features.dtype, device=features.device).view(1, 1, -1, 1)
    cols = torch.arange(width, dtype=features.dtype, device=features.device).view(1, 1, 1, -1)
    grid_dy = features.new_tensor(_GRID_DY).view(1, NUM_POINTS, 1, 1)
    grid_dx = features.new_tensor(_GRID_DX).view(1, NUM_POINTS, 1, 1)
    sample_y = rows + grid_dy + offsets[:, :, 0]  # [B, 9, h, w] in cells
    sample_x = cols + grid_dx + offsets[:, :, 1]
    # grid_sample with align_corners=False puts cell i at normalised (2 i + 1) / size - 1.
    grid = torch.stack(((2 * sample_x + 1) / width - 1, (2 * sample_y + 1) / height - 1), dim=-1)
    sampled = F.grid_sample(
        features, grid.view(batch, NUM_POINTS * height, width, 2),
        mode="bilinear", padding_mode="zeros", align_corners=False,
    )  # [B, C_in, 9 h, w]
    columns = sampled.view(batch, channels * NUM_POINTS, height * width)  # (c_in, k) major order
    out = weight.reshape(weight.shape[0], channels * NUM_POINTS) @ columns  # [B, C_out, h w]
    return out.view(batch, -1, height, width)


class StarDeformConv(nn.Module):
    """3 x 3 deformable conv (no bias, as VFNet) sampling the star points: forward(x, offsets)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, KERNEL_SIZE, KERNEL_SIZE))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, features: Tensor, offsets: Tensor) -> Tensor:
        """features [B, C_in, h, w], offsets [B, 18, h, w] (:func:`star_offsets`) -> [B, C_out, h, w]."""
        weight = self.weight.to(features.dtype)
        # ONNX has no opset-17 DeformConv; on a CPU torchvision's deform_conv2d backward is several
        # times slower than the same sampling written with grid_sample (docs/dcn.md).
        if torch.onnx.is_in_onnx_export() or features.device.type == "cpu":
            return deform_conv_by_sampling(features, offsets.to(features.dtype), weight)
        return deform_conv2d(features, offsets.to(features.dtype), weight, padding=KERNEL_SIZE // 2)
