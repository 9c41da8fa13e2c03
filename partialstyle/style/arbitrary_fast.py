"""The arbitrary-style transformer for CPU inference: ``arbitrary.ArbitraryTransformer``'s float
network, rearranged for speed and tested equal to it (``tests/test_arbitrary.py``).

Convs run on weights cast once to the compute dtype and packed by oneDNN
(``fast_conv.PackedConv``; the upsampling ones at low resolution, the full-resolution 9x9 ones on
2x2 pixel blocks) over channels-last activations; each normalisation, with the ReLU or residual
add after it and the next conv's padding, is one call of the fused kernel (``fused_norm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from partialstyle.style.fast_conv import PackedConv, even_pad
from partialstyle.style.fused_norm import (
    fused_region_norm,
    padded_activation,
    padded_input,
    sigmoid_output,
)

if TYPE_CHECKING:
    from partialstyle.style.arbitrary import ArbitraryTransformer, StyledConv

# Full-resolution convs with few channels run on 2x2 pixel blocks: the 9x9 ones, and the
# stride-2 one from full resolution (``fast_conv.strided_blocked_weight``).
BLOCKED_CONVS = {"contract0": 2, "contract1": 2, "expand2": 2}


class FastArbitraryTransformer:
    """The packed convs of one ``ArbitraryTransformer`` in one dtype, and the fast forward.

    Made from the network's weights as they are; whoever changes them or the precision makes
    a new one (``ArbitraryTransformer.set_precision`` does).
    """

    def __init__(self, net: ArbitraryTransformer, dtype: torch.dtype) -> None:
        self.net = net
        self.dtype = dtype
        convs = {}
        for i, conv in enumerate(net.contract):
            block = BLOCKED_CONVS.get(f"contract{i}", 1)
            convs[f"contract{i}"] = PackedConv(conv, dtype, block=block)
        for i, (first, second) in enumerate(net.residual):
            convs[f"residual{i}a"] = PackedConv(first.conv, dtype)
            convs[f"residual{i}b"] = PackedConv(second.conv, dtype)
        for i, layer in enumerate(net.expand):
            block = BLOCKED_CONVS.get(f"expand{i}", 1)
            convs[f"expand{i}"] = PackedConv(
                layer.conv, dtype, upsample=layer.upsample, block=block
            )
        self.convs = convs
        # Every norm's gamma and beta heads as one linear layer: one call a frame for all the
        # rows instead of two per norm (26 calls, about 1 ms at 640x360 on one thread).
        self.norms = [layer for pair in net.residual for layer in pair] + list(net.expand)
        heads = [head for layer in self.norms for head in (layer.gamma, layer.beta)]
        self.head_weight = torch.cat([head.weight.detach().float() for head in heads])
        self.head_bias = torch.cat([head.bias.detach().float() for head in heads])
        self.head_sizes = [head.out_features for head in heads]

    def __call__(
        self,
        kernels: ModuleType,
        image: torch.Tensor,
        styles: torch.Tensor,
        weights: torch.Tensor | None,
        shown_with: Sequence[torch.Tensor] = (),
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """``ArbitraryTransformer.forward`` (float) with the fused kernels ``kernels``.

        With ``shown_with`` (one image; weights of its top-left ``size``, where it will be
        shown), the result is that part's premultiplied layer [1,4,h,w] instead
        (``fused_norm.sigmoid_output``)."""
        if image.shape[0] > 1:
            masks = [None] * image.shape[0] if weights is None else weights.split(1)
            return torch.cat(
                [
                    self(kernels, one, styles, mask)
                    for one, mask in zip(image.split(1), masks, strict=True)
                ]
            )
        convs, net = self.convs, self.net
        levels = {}  # masks of every region but the base (the largest), per width
        base = None
        if weights is not None:  # one pass (see multistyle_fast.MaskPyramid)
            chosen, *pyramid = kernels.mask_pyramid(weights.float().contiguous())
            base = int(chosen)
            levels = {m.shape[-1]: m for m in pyramid}
        heads = F.linear(styles.float(), self.head_weight, self.head_bias)
        rows = iter(heads.split(self.head_sizes, dim=1))
        rows = {id(layer): (next(rows), next(rows)) for layer in self.norms}

        def norm(layer: StyledConv, y: torch.Tensor, **fused) -> torch.Tensor:
            width = y.shape[-1] * (2 if fused.get("subpixel") else 1)
            masks = levels.get(width) if weights is not None else None
            gamma, beta = rows[id(layer)]
            return fused_region_norm(kernels, y, gamma, beta, masks, base, layer.eps, **fused)

        def conv_norm(name: str, layer: StyledConv, x: torch.Tensor, **fused) -> torch.Tensor:
            # The AMX conv also sums the statistics as it writes (fast_conv.PackedConv).
            y, moments = convs[name].with_moments(x, levels if weights is not None else None)
            return norm(layer, y, moments=moments, **fused)

        # The contracting convs have no norm: the kernel only pads their outputs (reading a
        # blocked conv's output in its blocks, and writing it in blocks again, padded by 2,
        # for the strided blocked conv), and the input comes padded in blocks.
        x = padded_input(image, 4, self.dtype, block=convs["contract0"].block)
        for i in range(len(net.contract)):
            conv = convs[f"contract{i}"]
            following = convs.get(f"contract{i + 1}")
            into_blocks = following is not None and following.strided_blocks
            pad = even_pad(following.kernel) if into_blocks else 1
            out_block = 2 if into_blocks else 1
            # The blocked convs on AMX write the padded result themselves (one pass).
            padded = conv.padded_output(x, pad, out_block)
            if padded is None:
                y = conv(x, relu=True, shuffle=False)
                subpixel = conv.block > 1 and not conv.strided_blocks
                padded = padded_activation(kernels, y, pad, subpixel, out_block)
            x = padded
        last = len(net.residual) - 1
        for i, (first, second) in enumerate(net.residual):
            inner = x[..., 1:-1, 1:-1]
            hidden = conv_norm(f"residual{i}a", first, x, relu=True, out_pad=1)
            mode = "replicate" if i == last else "reflect"  # the upsampling conv wants replicate
            x = conv_norm(f"residual{i}b", second, hidden, residual=inner, out_pad=1, pad_mode=mode)
        # The upsampling and blocked convs' outputs go to the norm before pixel_shuffle, and
        # the norm before the blocked conv writes its input in blocks (fused_region_norm).
        up = convs["expand0"](x, shuffle=False)
        x = norm(net.expand[0], up, relu=True, out_pad=1, pad_mode="replicate", subpixel=True)
        up = convs["expand1"](x, shuffle=False)
        x = norm(net.expand[1], up, relu=True, out_pad=4, subpixel=True, out_block=2)
        x = norm(net.expand[2], convs["expand2"](x, shuffle=False), subpixel=True)
        return sigmoid_output(x, *(size or x.shape[-2:]), shown_with)
