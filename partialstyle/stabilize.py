"""Less flicker: keep the stylized result steady where the input is not moving.

Style networks amplify small input changes (sensor noise, compression) into visible
shimmer. Where the frame has barely changed since the last one, the new stylized result is
blended with the previous one; where things move, the new result is taken as is, so motion
does not smear.
"""

from __future__ import annotations

import torch

from partialstyle.filters import box_filter
from partialstyle.style import fused_norm

# Mean change (0..1 scale) over a small window above which a pixel counts as moving.
_MOTION_LEVEL = 0.04
_MOTION_RADIUS = 2


class OutputStabilizer:
    """Temporal smoothing of the stylized layer, gated by how much the input moved."""

    def __init__(self) -> None:
        self._previous_input: torch.Tensor | None = None
        self._previous_output: torch.Tensor | None = None

    def reset(self) -> None:
        self._previous_input = None
        self._previous_output = None

    def __call__(self, image: torch.Tensor, output: torch.Tensor, strength: float) -> torch.Tensor:
        """image [3,h,w] is the processed frame, output [C,h,w] its stylized layer."""
        previous_input, previous_output = self._previous_input, self._previous_output
        self._previous_input = image
        if (
            strength <= 0.0
            or previous_input is None
            or previous_output is None
            or previous_output.shape != output.shape
            or previous_input.shape != image.shape
        ):
            self._previous_output = output
            return output
        kernels = fused_norm.for_frames(image, previous_input, output, previous_output)
        if kernels is not None:  # the same arithmetic, a pass each instead of three and four
            change = kernels.mean_abs_change(image, previous_input)[None, None]
            motion = box_filter(change, _MOTION_RADIUS)[0, 0]
            steady = kernels.steady_blend(output, previous_output, motion, strength, _MOTION_LEVEL)
        else:
            change = (image - previous_input).abs().mean(0, keepdim=True)[None]
            motion = box_filter(change, _MOTION_RADIUS)[0]
            keep = strength * (1.0 - motion / _MOTION_LEVEL).clamp_(0.0, 1.0)
            steady = torch.lerp(output, previous_output, keep)
        self._previous_output = steady
        return steady
