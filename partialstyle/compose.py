"""Compositing: blend stylized regions with the original frame.

All images here are float tensors [3,H,W] in [0,1] on any device; masks are [H,W] in [0,1].
"""

from __future__ import annotations

import torch

# ITU-R BT.601 luma weights (what JPEG's YCbCr uses).
_LUMA = (0.299, 0.587, 0.114)


def luminance(image: torch.Tensor) -> torch.Tensor:
    return _LUMA[0] * image[0] + _LUMA[1] * image[1] + _LUMA[2] * image[2]


def preserve_colors(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Keep the original's colors and take only the stylized brightness.

    Adding the luminance difference to every channel is the YCbCr swap (Y from the
    stylized image, Cb/Cr from the original) written without the colour-space round trip.
    """
    shift = luminance(stylized) - luminance(original)
    return (original + shift).clamp_(0.0, 1.0)


def apply_strength(stylized: torch.Tensor, original: torch.Tensor, strength: float) -> torch.Tensor:
    """Mix towards the original: strength 1 is fully stylized, 0 the original."""
    if strength >= 1.0:
        return stylized
    return torch.lerp(original, stylized, strength)


def compose(layers: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
    """Σ mask·layer. The masks must sum to 1 at every pixel (a partition of the frame)."""
    result = layers[0] * masks[0]
    for layer, mask in zip(layers[1:], masks[1:], strict=True):
        result.add_(layer * mask)
    return result


def mask_overlay(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Debug view: tint the person mask red over a dimmed frame."""
    tint = torch.tensor([1.0, 0.15, 0.15], device=image.device, dtype=image.dtype)[:, None, None]
    dimmed = image * 0.6
    return torch.lerp(dimmed, tint * 0.5 + image * 0.5, mask[None])
