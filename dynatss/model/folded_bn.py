"""Frozen BatchNorm folded into the convolution before it: one pass over the activations, not three.

A frozen BatchNorm after a convolution is an affine map per output channel,
``bn(conv(x, W) + c) = s * (conv(x, W) + c) + t`` with ``s = gamma / sqrt(var + eps)`` and
``t = beta - mean * s``, which is the convolution ``conv(x, s * W) + (s * c + t)``. Computing it
that way skips the two element-wise passes (multiply, add) over every backbone activation in the
forward pass and their gradients in the backward pass: about a fifth of a MobileNetV2 training
step on the CPU (docs/benchmarks.md). The folded weight is recomputed from ``W`` on every call, so
``W`` keeps training and the frozen statistics stay untouched.

The module tree and the state dict keep their names: the convolution becomes a
:class:`FoldedConv2d` (same weight and bias parameters) that reads the BatchNorm's buffers, and
the BatchNorm becomes a :class:`FoldedFrozenBatchNorm2d` (same buffers) that passes its input
through. Checkpoints load into folded and unfolded models alike.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d


class FoldedFrozenBatchNorm2d(FrozenBatchNorm2d):
    """A FrozenBatchNorm2d whose affine map the preceding :class:`FoldedConv2d` already applied."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        """Per-channel ``s`` [C] and ``t`` [C] of the frozen affine map ``s * x + t``."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale


class FoldedConv2d(nn.Conv2d):
    """``conv(x, s * W) + (s * c + t)``: a Conv2d and the frozen BatchNorm after it, in one call."""

    def forward(self, x: Tensor) -> Tensor:
        norm = self._folded_norm[0]
        scale, shift = norm.scale_and_shift()  # [C_out] each
        weight = self.weight * scale.view(-1, 1, 1, 1)
        bias = shift if self.bias is None else self.bias * scale + shift
        return self._conv_forward(x, weight, bias)


def fold_frozen_batchnorm(module: nn.Module) -> int:
    """Fold every FrozenBatchNorm2d that directly follows a Conv2d in ``module``, in place.

    "Directly follows" means consecutive children of one parent with the BatchNorm registered
    right after the convolution, which is how torchvision's ResNets and MobileNetV2 are built and
    also the order their forward passes apply them (tests/model/test_folded_bn.py checks the
    outputs of every backbone in dynatss.model.backbone.SPECS). Returns the number of pairs folded.
    """
    folded = 0
    for parent in list(module.modules()):
        children = list(parent.named_children())
        for (_, conv), (_, norm) in zip(children, children[1:]):
            if (type(conv) is nn.Conv2d and type(norm) is FrozenBatchNorm2d
                    and conv.out_channels == norm.weight.numel()):
                # Same objects, new behaviour: parameters, buffers and optimizer references stay.
                conv.__class__, norm.__class__ = FoldedConv2d, FoldedFrozenBatchNorm2d
                # A tuple, not an attribute: the norm stays registered (and saved) only at its own place.
                conv._folded_norm = (norm,)
                folded += 1
    return folded
