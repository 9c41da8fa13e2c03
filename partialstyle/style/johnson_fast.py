"""Johnson's ``TransformerNet`` for CPU inference: the same arithmetic on the style networks'
fast path, tested equal to the plain network (``tests/test_johnson.py``).

Convs run on weights cast once to the compute dtype and packed by oneDNN
(``fast_conv.PackedConv``); the two upsampling convs at low resolution, the last 32->3 9x9 conv
on 2x2 pixel blocks; activations stay channels-last from conv to conv. Each instance norm, with
the ReLU or residual add after it and the next conv's padding, is one call of the fused kernel
(``fused_norm``), which also reads the upsampling convs' output before ``pixel_shuffle`` and
writes the last conv's input in blocks. The 0..255 pixel scale of the checkpoints is folded
into the first and last convs' weights.
"""

from __future__ import annotations

import copy
from types import ModuleType
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from partialstyle.style.fast_conv import PackedConv
from partialstyle.style.fused_norm import fused_region_norm

if TYPE_CHECKING:
    from partialstyle.style.johnson import TransformerNet


def _scaled(conv: nn.Conv2d, weight_scale: float, bias_scale: float) -> nn.Conv2d:
    """A copy of ``conv`` computing weight_scale * (w * x) + bias_scale * b."""
    scaled = copy.deepcopy(conv).requires_grad_(False)
    scaled.weight.mul_(weight_scale)
    if scaled.bias is not None:
        scaled.bias.mul_(bias_scale)
    return scaled


class FastTransformerNet:
    """The packed convs of one ``TransformerNet`` in one dtype, and the fast forward.

    Made from the network's weights as they are; ``TransformerNet`` drops it when weights are
    loaded or the precision changes.
    """

    def __init__(self, net: TransformerNet, dtype: torch.dtype) -> None:
        self.net = net
        self.dtype = dtype
        with torch.no_grad():
            # image * 255 in, result / 255 out: folded into the first and last convs.
            first = _scaled(net.conv1.conv2d, 255.0, 1.0)
            last = _scaled(net.deconv3.conv2d, 1.0 / 255.0, 1.0 / 255.0)
        self.convs = {
            "conv1": PackedConv(first, dtype),
            "conv2": PackedConv(net.conv2.conv2d, dtype),
            "conv3": PackedConv(net.conv3.conv2d, dtype),
            "deconv1": PackedConv(net.deconv1.conv2d, dtype, upsample=True),
            "deconv2": PackedConv(net.deconv2.conv2d, dtype, upsample=True),
            "deconv3": PackedConv(last, dtype, block=2),
        }
        for i, block in enumerate(self.blocks):
            self.convs[f"res{i}a"] = PackedConv(block.conv1.conv2d, dtype)
            self.convs[f"res{i}b"] = PackedConv(block.conv2.conv2d, dtype)

    @property
    def blocks(self) -> list[nn.Module]:
        net = self.net
        return [net.res1, net.res2, net.res3, net.res4, net.res5]

    def __call__(self, kernels: ModuleType, image: Tensor) -> Tensor:
        """``TransformerNet.forward`` on a padded batch [N,3,H,W] (H, W multiples of 4)."""
        if image.shape[0] > 1:
            return torch.cat([self(kernels, one) for one in image.split(1)])
        convs, net = self.convs, self.net

        def norm(layer: nn.InstanceNorm2d, y: Tensor, **fused) -> Tensor:
            gamma, beta = layer.weight.float()[None], layer.bias.float()[None]
            return fused_region_norm(kernels, y, gamma, beta, None, None, layer.eps, **fused)

        x = F.pad(image, (4,) * 4, mode="reflect").to(self.dtype, memory_format=torch.channels_last)
        x = norm(net.in1, convs["conv1"](x), relu=True, out_pad=1)
        x = norm(net.in2, convs["conv2"](x), relu=True, out_pad=1)
        x = norm(net.in3, convs["conv3"](x), relu=True, out_pad=1)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            inner = x[..., 1:-1, 1:-1]
            hidden = norm(block.in1, convs[f"res{i}a"](x), relu=True, out_pad=1)
            mode = "replicate" if i == last else "reflect"  # the upsampling conv wants replicate
            x = norm(block.in2, convs[f"res{i}b"](hidden), residual=inner, out_pad=1, pad_mode=mode)
        up = convs["deconv1"](x, shuffle=False)
        x = norm(net.in4, up, relu=True, out_pad=1, pad_mode="replicate", subpixel=True)
        up = convs["deconv2"](x, shuffle=False)
        x = norm(net.in5, up, relu=True, out_pad=4, subpixel=True, out_block=2)
        return convs["deconv3"](x).float().clamp_(0.0, 1.0)
