"""VFNet's star-shaped deformable conv: the sampling points land on the star of the initial box."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from dynatss.model.star_dcn import NUM_POINTS, StarDeformConv, deform_conv_by_sampling, star_offsets

STRIDE = 8
HEIGHT, WIDTH = 12, 14


def _coordinate_features() -> torch.Tensor:
    """[1, 2, H, W]: channel 0 the x, channel 1 the y pixel coordinate of each cell centre.

    Linear in the cell index, so bilinear sampling at any point inside the map returns the point's
    own pixel coordinates: the convolution output reveals where it sampled.
    """
    ys = (torch.arange(HEIGHT, dtype=torch.float64) + 0.5) * STRIDE
    xs = (torch.arange(WIDTH, dtype=torch.float64) + 0.5) * STRIDE
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y))[None]


def _point_reader() -> torch.Tensor:
    """Weight [18, 2, 3, 3]: output 2k is the x, 2k + 1 the y sampled by kernel point k (row-major)."""
    weight = torch.zeros(2 * NUM_POINTS, 2, 3, 3, dtype=torch.float64)
    for k in range(NUM_POINTS):
        weight[2 * k, 0, k // 3, k % 3] = 1.0
        weight[2 * k + 1, 1, k // 3, k % 3] = 1.0
    return weight


def _star_points(cx: float, cy: float, left: float, top: float, right: float, bottom: float) -> torch.Tensor:
    """VFNet's nine points, row-major over the 3 x 3 kernel: [9, 2] (x, y)."""
    return torch.tensor([
        [cx - left, cy - top], [cx, cy - top], [cx + right, cy - top],
        [cx - left, cy], [cx, cy], [cx + right, cy],
        [cx - left, cy + bottom], [cx, cy + bottom], [cx + right, cy + bottom],
    ], dtype=torch.float64)


@pytest.mark.parametrize("sampler", ["torchvision", "grid_sample"])
def test_sampling_points_are_the_star_of_the_box(sampler):
    i, j = 6, 7  # feature-map location; its anchor centre is ((j + 0.5) s, (i + 0.5) s)
    left, top, right, bottom = 13.0, 21.5, 30.25, 9.0  # pixels, keeping every point inside the map
    ltrb = torch.zeros(1, 4, HEIGHT, WIDTH, dtype=torch.float64)
    ltrb[0, :, i, j] = torch.tensor([left, top, right, bottom], dtype=torch.float64)
    offsets = star_offsets(ltrb, STRIDE)
    assert offsets.shape == (1, 2 * NUM_POINTS, HEIGHT, WIDTH)
    if sampler == "torchvision":
        sampled = deform_conv2d(_coordinate_features(), offsets, _point_reader(), padding=1)
    else:
        sampled = deform_conv_by_sampling(_coordinate_features(), offsets, _point_reader())
    points = sampled[0, :, i, j].view(NUM_POINTS, 2)
    expected = _star_points((j + 0.5) * STRIDE, (i + 0.5) * STRIDE, left, top, right, bottom)
    torch.testing.assert_close(points, expected, atol=1e-5, rtol=0)
    # A location with a zero box samples its own centre nine times.
    torch.testing.assert_close(sampled[0, :, 2, 3].view(NUM_POINTS, 2),
                               torch.tensor([[3.5 * STRIDE, 2.5 * STRIDE]] * NUM_POINTS, dtype=torch.float64))


def test_grid_sample_path_equals_deform_conv2d_everywhere():
    """Including points off the map (zero padding) and fractional positions near the border."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 7, 9, generator=generator)
    offsets = 4 * torch.randn(2, 2 * NUM_POINTS, 7, 9, generator=generator)
    weight = torch.randn(6, 5, 3, 3, generator=generator)
    expected = deform_conv2d(features, offsets, weight, padding=1)
    torch.testing.assert_close(deform_conv_by_sampling(features, offsets, weight), expected, atol=1e-4, rtol=1e-4)


def test_grid_sample_path_has_deform_conv2ds_gradients():
    """The CPU training path: the same gradients for features, offsets and weights (fractional points)."""
    generator = torch.Generator().manual_seed(1)
    inputs = (torch.randn(2, 5, 7, 9, generator=generator, dtype=torch.float64),
              3 * torch.rand(2, 2 * NUM_POINTS, 7, 9, generator=generator, dtype=torch.float64) + 0.3,
              torch.randn(6, 5, 3, 3, generator=generator, dtype=torch.float64))
    upstream = torch.randn(2, 6, 7, 9, generator=generator, dtype=torch.float64)
    gradients = []
    for function in (lambda f, o, w: deform_conv2d(f, o, w, padding=1), deform_conv_by_sampling):
        leaves = [x.clone().requires_grad_() for x in inputs]
        (function(*leaves) * upstream).sum().backward()
        gradients.append([leaf.grad for leaf in leaves])
    for got, expected in zip(gradients[1], gradients[0]):
        torch.testing.assert_close(got, expected, atol=1e-8, rtol=1e-6)


def test_star_deform_conv_runs_and_trains_on_cpu():
    torch.manual_seed(0)
    conv = StarDeformConv(4, 6)
    features = torch.randn(1, 4, 5, 5)
    ltrb = (20 * torch.rand(1, 4, 5, 5)).requires_grad_()
    out = conv(features, star_offsets(ltrb, STRIDE))
    assert out.shape == (1, 6, 5, 5)
    out.square().sum().backward()
    assert conv.weight.grad.abs().sum() > 0 and ltrb.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    conv = StarDeformConv(4, 6)
    features = torch.randn(2, 4, 9, 11)
    offsets = star_offsets(30 * torch.rand(2, 4, 9, 11), STRIDE)
    expected = conv(features, offsets)
    got = conv.cuda()(features.cuda(), offsets.cuda()).cpu()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
