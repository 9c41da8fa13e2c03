"""Turn the segmenter's raw person probability into a clean, stable mask.

Raw masks are blocky (the model sees 256 pixels), soft in the wrong places and flicker on
video. Refinement: temporal smoothing, a soft threshold, a guided filter that snaps the edge
to edges of the image itself, and a feather that softens what remains.
"""

from __future__ import annotations

import torch

from partialstyle.filters import downsample_area, gaussian_blur, guided_filter, guided_upsample
from partialstyle.layers import luminance

# Width of the soft threshold: probabilities within ±_THRESHOLD_BAND/2 of the threshold ramp.
_THRESHOLD_BAND = 0.2
_GUIDED_EPS = 1e-3
# Above this height the guided filter's coefficients are fitted at half resolution and scaled
# up (He & Sun's fast guided filter): the segmenter sees at most 256 pixels, so nothing finer
# is lost, and the filter costs a quarter.
_HALF_RESOLUTION_FROM = 240


def soft_threshold(probability: torch.Tensor, threshold: float) -> torch.Tensor:
    """A linear ramp around `threshold` instead of a hard cut, so edges stay anti-aliased."""
    return ((probability - threshold) / _THRESHOLD_BAND + 0.5).clamp_(0.0, 1.0)


def refine_mask(
    probability: torch.Tensor,
    image: torch.Tensor,
    threshold: float,
    feather: float,
    edge_refine: bool,
) -> torch.Tensor:
    """One frame's refinement: probability [H,W] and image [3,H,W] in [0,1] → mask [H,W].

    `feather` is in pixels of this resolution.
    """
    mask = soft_threshold(probability, threshold)[None, None]
    if edge_refine:
        gray = luminance(image)[None, None]
        # The segmenter's own resolution is ~1/3 of a 720p frame; a radius of about 1% of
        # the height covers that blockiness.
        radius = max(2, round(image.shape[-2] / 100))
        if image.shape[-2] >= _HALF_RESOLUTION_FROM:
            half = (image.shape[-2] // 2, image.shape[-1] // 2)
            gray_half = downsample_area(gray, half)
            mask_half = downsample_area(mask, half)
            mask = guided_upsample(gray_half, mask_half, gray, max(1, radius // 2), _GUIDED_EPS)
        else:
            mask = guided_filter(gray, mask, radius, _GUIDED_EPS)
    mask = gaussian_blur(mask, feather / 2.0)
    return mask[0, 0].clamp_(0.0, 1.0)


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
