"""The arbitrary-style transformer's int8 emulation ("fake quant"): the float network of
``arbitrary.py`` with every activation rounded where the original int8 graph rounds it.

The original ONNX graph quantises each activation to int8 with one scale and zero point read
from its QuantizeLinear nodes (kept by ``convert_arbitrary`` in the ``QuantSites`` buffers).
Rounding at the same points in the same order makes the torch network reproduce the graph's
output on flat frames (walls, sky), where the float network visibly differs; it costs 2-3x
the float network's time on a CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from partialstyle.style.multistyle import blend_region_rows, region_statistics

if TYPE_CHECKING:
    from partialstyle.style.arbitrary import ArbitraryTransformer, StyledConv

# Where the int8 graph rounds a conditional instance norm's values (one scale and zero point
# each, read from its QuantizeLinear nodes), in computation order; "gamma"/"beta" are the heads.
NORM_QUANT_SITES = (
    "conv",
    "mean",
    "squared_diff",
    "variance",
    "variance_eps",
    "inv_std",
    "scale",
    "mean_scale",
    "shift",
    "scaled",
    "out",
    "gamma",
    "beta",
)
# The transformer's other rounding points: image and style vector in, contracting ReLUs, residual
# sums and the sigmoid output.
IO_QUANT_SITES = ("image", "style", "output")


def round_to_int8_grid(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor
) -> torch.Tensor:
    """Round to the int8 grid and back, half to even like onnxruntime."""
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, -128, 127)


class QuantSites(nn.Module):
    """The int8 graph's per-tensor (scale, zero point) for a list of named activations."""

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self.index = {name: i for i, name in enumerate(names)}
        self.register_buffer("scale", torch.zeros(len(names)))
        self.register_buffer("zero_point", torch.zeros(len(names), dtype=torch.int32))

    def forward(self, name: str | int, x: torch.Tensor) -> torch.Tensor:
        i = self.index[name] if isinstance(name, str) else name
        return round_to_int8_grid(x, self.scale[i], self.zero_point[i])


def transformer_int8(
    net: ArbitraryTransformer,
    image: torch.Tensor,
    styles: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``ArbitraryTransformer.forward`` with the int8 graph's rounding at every step."""
    quarter = half = None
    if weights is not None:
        half = F.avg_pool2d(weights, 2)
        quarter = F.avg_pool2d(half, 2)
    y = net.io_quant("image", image)
    styles = net.io_quant("style", styles)
    for i, conv in enumerate(net.contract):
        y = F.relu(conv(F.pad(y, (conv.kernel_size[0] // 2,) * 4, mode="reflect")))
        y = net.contract_quant(i, y)
    for i, (first, second) in enumerate(net.residual):
        inner = F.relu(styled_conv_int8(first, y, styles, quarter))
        y = net.residual_quant(i, y + styled_conv_int8(second, inner, styles, quarter))
    y = F.relu(styled_conv_int8(net.expand[0], y, styles, half))
    y = F.relu(styled_conv_int8(net.expand[1], y, styles, weights))
    out = torch.sigmoid(styled_conv_int8(net.expand[2], y, styles, weights))
    return net.io_quant("output", out)


def styled_conv_int8(
    layer: StyledConv, x: torch.Tensor, styles: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """``StyledConv.forward`` in the graph's own algebra (TF batch-norm form) with its
    rounding at every step."""
    q = layer.quant
    y = q("conv", layer.convolve(x))
    if weights is not None:
        return _regions_int8(layer, y, styles, weights)
    mean = q("mean", y.mean(dim=(2, 3), keepdim=True))
    var = q("variance", q("squared_diff", (y - mean) ** 2).mean(dim=(2, 3), keepdim=True))
    inv_std = q("inv_std", torch.rsqrt(q("variance_eps", var + layer.eps)))
    gamma = q("gamma", layer.gamma(styles))[:, :, None, None]
    beta = q("beta", layer.beta(styles))[:, :, None, None]
    scale = q("scale", gamma * inv_std)
    shift = q("shift", beta - q("mean_scale", mean * scale))
    # a ReLU after the layer is folded into "out": its zero point makes 0 the lowest value
    return q("out", q("scaled", y * scale) + shift)


def _regions_int8(
    layer: StyledConv, y: torch.Tensor, styles: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Per-region statistics with the graph's rounding of each region's scalars (the graph
    itself has one region; its per-pixel squared differences are not rounded here)."""
    q = layer.quant
    mean, var = region_statistics(y, weights)  # [N,R,C]
    mean, var = q("mean", mean), q("variance", var)
    inv_std = q("inv_std", torch.rsqrt(q("variance_eps", var + layer.eps)))
    scale = q("scale", q("gamma", layer.gamma(styles)) * inv_std)
    shift = q("shift", q("beta", layer.beta(styles)) - q("mean_scale", mean * scale))
    return q(
        "out",
        q("scaled", y * blend_region_rows(scale, weights)) + blend_region_rows(shift, weights),
    )
