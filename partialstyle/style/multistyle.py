"""The 26-style transformer network (Dumoulin et al. 2017) with spatially varying style.

One network holds 26 styles: every instance norm layer has a table of 26 gamma/beta rows,
and a style is a weight vector that mixes those rows (conditional instance norm, CIN).
``SpatialCIN`` goes one step further: given soft region masks, each pixel gets its own mix,
so a person and the background can be painted in different styles in a single pass.

Layout (mirrors the source ONNX graph; every conv has reflect padding and no bias):
contract 3->32 9x9, 32->32 3x3/2, 32->32 3x3/2; six residual blocks of two 3x3 convs;
expand nearest x2 + 32->8 3x3, nearest x2 + 8->4 3x3, 4->3 9x9; sigmoid.
Every conv is followed by a CIN; a ReLU follows all but the second CIN of each residual
block and the last one.

This module is the plain reference, the one checked against onnxruntime and the one to read
first. Inference runs ``multistyle_fast.FastMultiStyleNet``, built from these weights and
tested equal to this network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from partialstyle.layers import pad_to_multiple
from partialstyle.style.names import NUM_MULTISTYLE

# The network downsamples twice by 2, so inputs are padded to a multiple of 4. The deepest
# level then needs at least 2 rows/columns for its 1-pixel reflect pad, hence 8 at full size.
SIZE_MULTIPLE = 4
MIN_SIDE = 8

# A region's statistics are pooled with this many pixels (at the layer's resolution) drawn
# from the whole image's statistics, like a prior: a region of area A weighs its own moments
# by A / (A + 64). Large regions (the background, a person: thousands of pixels at the
# residual blocks' 1/4 resolution) keep their own statistics to within a few percent; a
# sliver of a few pixels, whose variance would be noise, falls back smoothly to the whole
# image's. 64 pixels (an 8x8 patch at that resolution) is a judgement, not a tuned value:
# small against real regions, large against specks at a mask's soft edge.
STATISTICS_PRIOR_PIXELS = 64.0


def region_statistics(
    x: Tensor, masks: Tensor, prior_pixels: float = STATISTICS_PRIOR_PIXELS
) -> tuple[Tensor, Tensor]:
    """Mask-weighted mean and (biased) variance per region and channel, [N,R,C] each, fp32.

    ``x`` is [N,C,H,W], ``masks`` [N,R,H,W] (soft weights; a pixel counts m times). Each
    region's moments are pooled with ``prior_pixels`` pixels' worth of the whole image's
    (see STATISTICS_PRIOR_PIXELS), so tiny or empty regions get the image's statistics.
    Plain ops, differentiable: the reference for the fast paths.
    """
    x, masks = x.float(), masks.float()
    var_all, mean_all = torch.var_mean(x, dim=(2, 3), unbiased=False)  # [N,C]
    centred = x - mean_all[..., None, None]
    area = masks.sum(dim=(2, 3))[..., None]  # [N,R,1]
    first = torch.einsum("nrhw,nchw->nrc", masks, centred)
    second = torch.einsum("nrhw,nchw->nrc", masks, centred * centred)
    return pooled_statistics(area, first, second, mean_all[:, None], var_all[:, None], prior_pixels)


def pooled_statistics(
    area: Tensor,
    first: Tensor,
    second: Tensor,
    mean_all: Tensor,
    var_all: Tensor,
    prior_pixels: float = STATISTICS_PRIOR_PIXELS,
) -> tuple[Tensor, Tensor]:
    """A region's mean and variance from its area and its first and second moments about
    the whole image's mean, pooled with ``prior_pixels`` pixels of the whole image's
    distribution (mean ``mean_all``, variance ``var_all``). Shapes broadcast."""
    weight = area + prior_pixels
    offset = first / weight  # region mean minus image mean
    var = (second + prior_pixels * var_all) / weight - offset * offset
    return mean_all + offset, var.clamp_min(0.0)


class SpatialCIN(nn.Module):
    """Conditional instance norm whose affine can vary per pixel.

    Without region masks this is the source network's instance norm with one mixed
    gamma/beta row. With masks, each region is normalised with its own mask-weighted mean
    and variance per channel (``region_statistics``) and then gets its own gamma/beta, so a
    region's look does not depend on what the other regions contain or how they are
    styled. Every pixel's scale and shift are the mask-weighted blend of the regions'.
    """

    def __init__(self, channels: int, num_styles: int = NUM_MULTISTYLE, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))

    def forward(
        self, x: Tensor, style_weights: Tensor, region_masks: Tensor | None = None
    ) -> Tensor:
        """Normalise ``x`` [N,C,H,W] and apply the style affine.

        ``style_weights`` is [R, num_styles]; ``region_masks`` is [N,R,h,w] (area-averaged
        here if not already at ``x``'s resolution) or None, when R must be 1. The masks
        must sum to 1 at every pixel.
        """
        rows = self.affine_rows(style_weights, region_masks)
        if region_masks is None:
            return apply_affine(F.instance_norm(x, eps=self.eps), rows, None)
        masks = masks_at(region_masks, x)
        mean, var = region_statistics(x, masks)  # [N,R,C] each
        channels = x.shape[1]
        scale = rows[:, :channels] * torch.rsqrt(var + self.eps)
        shift = rows[:, channels:] - mean * scale
        return apply_affine(x, torch.cat([scale, shift], dim=2), masks)

    def affine_rows(self, style_weights: Tensor, region_masks: Tensor | None) -> Tensor:
        """The mixed [gamma | beta] row of every region, [R, 2C] in fp32."""
        if region_masks is None and style_weights.shape[0] != 1:
            raise ValueError(
                f"{style_weights.shape[0]} style mixes were given without region masks; "
                "pass region_masks or a single style mix"
            )
        weights = style_weights.float()
        return torch.cat([weights @ self.gamma.float(), weights @ self.beta.float()], dim=1)


def apply_affine(x: Tensor, rows: Tensor, masks: Tensor | None) -> Tensor:
    """x * scale + shift for ``x`` [N,C,H,W] and ``rows`` = [scale | shift].

    Without masks ``rows`` is [1, 2C]. With masks [N,R,H,W], ``rows`` is [N,R,2C] and every
    pixel's scale and shift are the mask-weighted blend of its image's region rows.
    """
    channels = x.shape[1]
    rows = rows.to(x.dtype)
    if masks is None:
        return torch.addcmul(rows[0, channels:, None, None], x, rows[0, :channels, None, None])
    maps = blend_region_rows(rows, masks)
    return torch.addcmul(maps[:, channels:], x, maps[:, :channels])


def blend_region_rows(rows: Tensor, masks: Tensor) -> Tensor:
    """Per-image region rows [N,R,C] -> [N,C,h,w], each pixel the mask-weighted blend of its
    image's rows (``masks`` [N,R,h,w])."""
    return torch.einsum("nrhw,nrc->nchw", masks, rows)


def resize_masks(masks: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Area-average masks down to ``size`` (exact block means when the sizes divide)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.adaptive_avg_pool2d(masks, size)


def masks_at(region_masks: Tensor | None, x: Tensor) -> Tensor | None:
    """Region masks at ``x``'s resolution and dtype (None stays None)."""
    if region_masks is None:
        return None
    return resize_masks(region_masks, x.shape[-2:]).to(x.dtype)


class ConvCIN(nn.Module):
    """Reflect pad, convolution (no bias), SpatialCIN, then ReLU unless ``relu`` is False.

    With ``upsample`` the input is first enlarged x2 by nearest neighbour.
    """

    norm_layer: type[SpatialCIN] = SpatialCIN

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        upsample: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.pad = kernel_size // 2
        self.upsample = upsample
        self.relu = relu
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=False)
        self.norm = self.norm_layer(out_channels)

    def forward(
        self, x: Tensor, style_weights: Tensor, region_masks: Tensor | None = None
    ) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        y = self.conv(F.pad(x, [self.pad] * 4, mode="reflect"))
        y = self.norm(y, style_weights, region_masks)
        return F.relu(y) if self.relu else y


class ResidualBlock(nn.Module):
    """x + CIN(conv(ReLU(CIN(conv(x))))): the second norm has no ReLU."""

    conv_layer: type[ConvCIN] = ConvCIN

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first = self.conv_layer(channels, channels, 3)
        self.second = self.conv_layer(channels, channels, 3, relu=False)

    def forward(
        self, x: Tensor, style_weights: Tensor, region_masks: Tensor | None = None
    ) -> Tensor:
        hidden = self.first(x, style_weights, region_masks)
        return x + self.second(hidden, style_weights, region_masks)


class MultiStyleNet(nn.Module):
    """The 26-style transformer: image in [0,1] -> stylized image in [0,1], any size.

    ``conv_layer`` and ``residual_block`` are the layer types, so the fast network
    (``multistyle_fast``) is this one with faster layers and the same parameter names.
    """

    conv_layer: type[ConvCIN] = ConvCIN
    residual_block: type[ResidualBlock] = ResidualBlock

    def __init__(self, num_residual_blocks: int = 6) -> None:
        super().__init__()
        conv = self.conv_layer
        self.contract = nn.ModuleList(
            [conv(3, 32, 9), conv(32, 32, 3, stride=2), conv(32, 32, 3, stride=2)]
        )
        self.res = nn.ModuleList(self.residual_block(32) for _ in range(num_residual_blocks))
        self.expand = nn.ModuleList(
            [
                conv(32, 8, 3, upsample=True),
                conv(8, 4, 3, upsample=True),
                conv(4, 3, 9, relu=False),
            ]
        )

    def forward(
        self,
        image: Tensor,
        style_weights: Tensor,
        region_masks: Tensor | None = None,
        share_repeated_styles: bool = True,
    ) -> Tensor:
        """Stylize ``image`` [N,3,H,W] in [0,1].

        ``style_weights`` [R,26] holds one style mix per region (rows are used as given, so
        normalise them to sum 1). ``region_masks`` [N,R,H,W] are soft masks summing to 1 per
        pixel; without them R must be 1 and the whole image gets the one mix. Each region is
        normalised with its own statistics (see SpatialCIN). Regions given the same mix are
        one region, so one style everywhere is a plain forward, unless
        ``share_repeated_styles`` is False (for a region that shares the frame with pixels
        this network does not paint, see ``stylize``).
        """
        style_weights, masks = regions_to_paint(
            image, style_weights, region_masks, share_repeated_styles
        )
        height, width = image.shape[-2:]
        x = pad_to_multiple(image, SIZE_MULTIPLE, MIN_SIDE)
        for layer in [*self.contract, *self.res, *self.expand]:
            x = layer(x, style_weights, masks)
        return torch.sigmoid(x[..., :height, :width])


def regions_to_paint(
    image: Tensor,
    style_weights: Tensor,
    region_masks: Tensor | None,
    share_repeated_styles: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """The style rows and region masks the layers see: inputs checked, regions with the same
    mix merged (unless ``share_repeated_styles`` is False), masks in fp32 padded like the
    image, or None when merging left one region (a plain forward)."""
    check_inputs(image, style_weights, region_masks)
    if region_masks is not None and share_repeated_styles:
        style_weights, region_masks = merge_repeated_styles(style_weights, region_masks)
        if style_weights.shape[0] == 1:
            region_masks = None
    if region_masks is None:
        return style_weights, None
    return style_weights, pad_to_multiple(region_masks.float(), SIZE_MULTIPLE, MIN_SIDE)


def merge_repeated_styles(styles: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """One region per distinct style row ([R,K] styles), its mask the sum of theirs.

    Pixels painted in the same style then share normalisation statistics, as in a plain
    forward. Rows keep the order of their first appearance.
    """
    kept: list[int] = []
    owner: list[int] = []
    for r in range(styles.shape[0]):
        match = next(
            (k for k, first in enumerate(kept) if torch.equal(styles[first], styles[r])), None
        )
        if match is None:
            kept.append(r)
            match = len(kept) - 1
        owner.append(match)
    if len(kept) == styles.shape[0]:
        return styles, masks
    index = torch.tensor(owner, device=masks.device)
    merged = masks.new_zeros(masks.shape[0], len(kept), *masks.shape[2:])
    return styles[kept], merged.index_add_(1, index, masks)


def check_inputs(image: Tensor, style_weights: Tensor, region_masks: Tensor | None) -> None:
    """ValueError naming the first argument whose shape the network cannot take."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be [N,3,H,W], got {list(image.shape)}")
    if style_weights.dim() != 2 or style_weights.shape[1] != NUM_MULTISTYLE:
        raise ValueError(
            f"style_weights must be [R,{NUM_MULTISTYLE}], got {list(style_weights.shape)}"
        )
    if region_masks is None:
        if style_weights.shape[0] != 1:
            raise ValueError(
                f"{style_weights.shape[0]} style mixes need region_masks; pass masks or one mix"
            )
        return
    expected = [image.shape[0], style_weights.shape[0], *image.shape[-2:]]
    if list(region_masks.shape) != expected:
        raise ValueError(
            f"region_masks must be {expected} (N,R,H,W), got {list(region_masks.shape)}"
        )
