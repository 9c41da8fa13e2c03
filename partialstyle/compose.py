"""Compositing: blend stylized regions with the original frame.

All images here are float tensors [3,H,W] in [0,1] on any device; masks are [H,W] in [0,1].
"""

from __future__ import annotations

import torch

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
