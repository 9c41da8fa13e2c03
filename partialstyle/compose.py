"""Compositing: blend stylized regions into one layer, bring it to the frame's size and
blend it onto the frame.

All images here are float tensors [3,H,W] in [0,1] on any device; masks are [H,W] in [0,1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from partialstyle.filters import guided_upsample
from partialstyle.frames import resize_image, to_uint8
from partialstyle.layers import luminance


def preserve_colors(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Keep the original's colors and take only the stylized brightness.

    Adding the luminance difference to every channel is the YCbCr swap (Y from the
    stylized image, Cb/Cr from the original) written without the colour-space round trip.
    """
    shift = luminance(stylized) - luminance(original)
    return (original + shift).clamp_(0.0, 1.0)


def blend_onto(
    original: torch.Tensor, premultiplied: torch.Tensor, coverage: torch.Tensor
) -> torch.Tensor:
    """original·(1 − coverage) + premultiplied, where premultiplied = Σ coverage_r·styled_r.

    coverage is each pixel's total share of stylized content (region mask × strength).
    """
    return torch.addcmul(premultiplied, original, 1.0 - coverage).clamp_(0.0, 1.0)


def mask_overlay(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Debug view: tint the person mask red over a dimmed frame."""
    tint = torch.tensor([1.0, 0.15, 0.15], device=image.device, dtype=image.dtype)[:, None, None]
    dimmed = image * 0.6
    return torch.lerp(dimmed, tint * 0.5 + image * 0.5, mask[None])


# Edge-aware upsampling window (processing pixels) and regularisation, tuned on real photos
# by the quality numbers `partialstyle bench` reports.
_GUIDED_UPSAMPLE_RADIUS = 2
_GUIDED_UPSAMPLE_EPS = 1e-2


def premultiplied_layer(
    small: torch.Tensor, parts: list[tuple[torch.Tensor, torch.Tensor | float]]
) -> torch.Tensor:
    """Stylized images and their weights (a [h,w] mask times strength, or one number) as one
    premultiplied layer plus its coverage, [4,h,w].

    Blending at processing size and scaling the layer once keeps the cost at full resolution
    independent of the number of regions, and pixels no region styles keep their exact
    original values.
    """
    coverage = small.new_zeros(small.shape[-2:])
    premultiplied = small.new_zeros(small.shape)
    for styled, weight in parts:
        coverage += weight
        premultiplied += weight * styled
    return torch.cat([premultiplied, coverage[None]])


def upsample(
    layer: torch.Tensor, small: torch.Tensor, original: torch.Tensor, mode: str
) -> torch.Tensor:
    """Bring a [C,h,w] layer from processing size (`small`'s) to the frame's (`original`'s):
    bilinear, or guided by the frame's luminance so edges stay sharp."""
    if layer.shape[-2:] == original.shape[-2:]:
        return layer
    if mode == "bilinear":
        size = tuple(original.shape[-2:])
        return F.interpolate(layer[None], size=size, mode="bilinear", align_corners=False)[0]
    return guided_upsample(
        luminance(small)[None, None],
        layer[None],
        luminance(original)[None, None],
        radius=_GUIDED_UPSAMPLE_RADIUS,
        eps=_GUIDED_UPSAMPLE_EPS,
    )[0]


def compose_frame(
    frame: np.ndarray,
    original: torch.Tensor,
    small: torch.Tensor,
    layer: torch.Tensor,
    upsample_mode: str,
    person: torch.Tensor | None = None,
) -> np.ndarray:
    """The full-resolution pass: the layer scaled to the frame and blended onto it, with the
    person mask `person` (processing size) tinted over it when given. Returns `frame`'s
    shape and dtype (uint8), alpha untouched."""
    layer = upsample(layer, small, original, upsample_mode)
    result = blend_onto(original, layer[:3], layer[3].clamp_(0.0, 1.0))
    if person is not None:
        full_mask = resize_image(person[None], tuple(original.shape[-2:]))[0].clamp_(0.0, 1.0)
        result = mask_overlay(result, full_mask)
    styled = to_uint8(result).cpu().numpy()
    if frame.shape[-1] == 3:
        return styled
    out = frame.copy()  # keeps the alpha channel
    out[..., :3] = styled
    return out
