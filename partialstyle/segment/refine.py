"""Turn the segmenter's raw person probability into a clean, stable mask.

Raw masks are blocky (the model sees 256 pixels), soft in the wrong places and flicker on
video. Refinement: temporal smoothing, a soft threshold, a guided filter that snaps the edge
to edges of the image itself, and a feather that softens what remains.
"""

from __future__ import annotations

import torch

from partialstyle.filters import (
    downsample_area,
    gaussian_blur,
    guided_filter,
    guided_upsample,
    upsample_bilinear,
)
from partialstyle.layers import BT601_LUMA, luminance
from partialstyle.style import fused_norm

# Width of the soft threshold: probabilities within ±_THRESHOLD_BAND/2 of the threshold ramp.
_THRESHOLD_BAND = 0.2
_GUIDED_EPS = 1e-3
# Above this height the guided filter's coefficients are fitted at half resolution and scaled
# up (He & Sun's fast guided filter): the segmenter sees at most 256 pixels, so nothing finer
# is lost, and the filter costs a quarter.
_HALF_RESOLUTION_FROM = 240


def soft_threshold(probability: torch.Tensor, threshold: float) -> torch.Tensor:
    """A linear ramp around `threshold` instead of a hard cut, so edges stay anti-aliased."""
    return probability.sub(threshold).div_(_THRESHOLD_BAND).add_(0.5).clamp_(0.0, 1.0)


def refine_mask(
    probability: torch.Tensor,
    image: torch.Tensor,
    threshold: float,
    feather: float,
    edge_refine: bool,
) -> torch.Tensor:
    """One frame's refinement: probability and image [3,H,W] in [0,1] → mask [H,W].

    The probability is [H,W], or the segmenter's smaller output, scaled up bilinearly (in
    the first pass of the compiled kernel where it applies). `feather` is in pixels of this
    resolution.
    """
    height = image.shape[-2]
    if edge_refine and height >= _HALF_RESOLUTION_FROM:
        # The segmenter's own resolution is ~1/3 of a 720p frame; a radius of about 1% of
        # the height covers that blockiness. The feather's blur comes in the same pass.
        radius = max(1, max(2, round(height / 100)) // 2)
        gray, gray_half, mask_half = _half_resolution_inputs(probability, image, threshold)
        mask = guided_upsample(gray_half, mask_half, gray, radius, _GUIDED_EPS, feather / 2.0)
    elif edge_refine:
        gray = luminance(image)[None, None]
        mask = soft_threshold(_at_size(probability, image), threshold)[None, None]
        mask = guided_filter(gray, mask, max(2, round(height / 100)), _GUIDED_EPS)
        mask = gaussian_blur(mask, feather / 2.0)
    else:
        mask = soft_threshold(_at_size(probability, image), threshold)[None, None]
        mask = gaussian_blur(mask, feather / 2.0)
    return mask[0, 0].clamp_(0.0, 1.0)


def _half_resolution_inputs(
    probability: torch.Tensor, image: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The frame's luma, and it and the soft-thresholded mask at half size, [1,1,...] each:
    one pass of the compiled kernel on CPU frames of even size (a tenth of the torch ops'
    time, and a smaller probability is scaled up on the way), else those ops."""
    height, width = image.shape[-2:]
    kernels = fused_norm.for_frames(probability, image)
    if kernels is not None and height % 2 == 0 and width % 2 == 0:
        gray, gray_half, mask_half = kernels.refine_inputs(
            probability, image, threshold, _THRESHOLD_BAND, list(BT601_LUMA)
        )
        return gray[None, None], gray_half[None, None], mask_half[None, None]
    gray = luminance(image)[None, None]
    mask = soft_threshold(_at_size(probability, image), threshold)[None, None]
    half = (height // 2, width // 2)
    return gray, downsample_area(gray, half), downsample_area(mask, half)


def _at_size(probability: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """The probability scaled bilinearly to the image's size (itself if it has it)."""
    return upsample_bilinear(probability[None, None], image.shape[-2:])[0, 0]


class PersonMask:
    """The person mask across video frames: keeps the running average for temporal smoothing."""

    def __init__(self) -> None:
        self._previous: torch.Tensor | None = None

    def reset(self) -> None:
        self._previous = None

    def smooth(self, probability: torch.Tensor, smoothing: float) -> torch.Tensor:
        """Exponential moving average of the probability; a change of size starts afresh."""
        previous = self._previous
        if (
            smoothing > 0.0
            and previous is not None
            and previous.shape == probability.shape
            and previous.device == probability.device
        ):
            probability = torch.lerp(probability, previous, smoothing)
        self._previous = probability
        return probability
