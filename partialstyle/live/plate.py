"""The styled background as last seen at each pixel: what fills the wall a person uncovers.

When a person moves, the keyframe did not see the wall they uncovered: it showed the
person there. A webcam's wall stands still, though, and an earlier keyframe may well have
seen that part of it while the person stood elsewhere. The plate keeps, per pixel, the
newest keyframe's styled colour where that keyframe saw background, with the gray frame it
was styled from; an uncovered pixel takes the plate's colour while the frame still looks as
it did then (same place, same brightness), so a moving person leaves styled wall behind
instead of a flat local mean. Where the background moved too (a camera pan, a door), the
frame no longer matches the plate and the local mean fills as before.

Arrays are numpy: colour uint8 h×w×3 at processing size; gray, masks at flow size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Background this far from the person's outline (flow pixels) goes on the plate: the mask's
# soft edge and the style networks' halo around the person stay off it.
_MARGIN = 3
_MARGIN_KERNEL = np.ones((2 * _MARGIN + 1, 2 * _MARGIN + 1), np.uint8)
# A pixel counts as unchanged while its gray level is within this many levels of the plate's
# (sensor noise and compression leave a few; a person or a moved wall, far more).
_SAME_GRAY = 10


@dataclass(frozen=True, eq=False)
class BackgroundPlate:
    """Styled background colour per pixel (processing size), the gray frame each pixel was
    seen in, and where the plate holds anything (bool, flow size)."""

    color: np.ndarray
    gray: np.ndarray
    seen: np.ndarray

    @classmethod
    def empty(cls, color_shape: tuple[int, ...], gray_shape: tuple[int, ...]) -> BackgroundPlate:
        return cls(
            np.zeros(color_shape, np.uint8),
            np.zeros(gray_shape, np.uint8),
            np.zeros(gray_shape, bool),
        )

    def fits(self, color: np.ndarray, gray: np.ndarray) -> bool:
        return self.color.shape == color.shape and self.gray.shape == gray.shape

    def updated(
        self, color: np.ndarray, gray: np.ndarray, person: np.ndarray, styled: np.ndarray
    ) -> BackgroundPlate:
        """A new plate with a keyframe's background laid over this one.

        color: the keyframe's styled colour; gray: its frame at flow size; person: its person
        mask and styled: where its coverage is above 0, both at flow size (a region styled
        `none` puts nothing on the plate: its pixels need no fill).
        """
        background = (person < 0.5) & styled
        background = cv2.erode(background.astype(np.uint8), _MARGIN_KERNEL) > 0
        at_color = _at_color_size(background, color)
        plate_color = self.color.copy()
        cv2.copyTo(color, at_color.astype(np.uint8), plate_color)
        return BackgroundPlate(
            plate_color, np.where(background, gray, self.gray), self.seen | background
        )

    def fill(self, color: np.ndarray, holes: np.ndarray, gray: np.ndarray) -> np.ndarray:
        """Fill the `holes` (bool, flow size) of `color` (changed in place) that the plate saw
        and that look as they did then; returns the pixels it filled."""
        usable = holes & self.seen
        usable &= np.abs(gray.astype(np.int16) - self.gray) <= _SAME_GRAY
        if usable.any():
            cv2.copyTo(self.color, _at_color_size(usable, color).astype(np.uint8), color)
        return usable


def _at_color_size(mask: np.ndarray, color: np.ndarray) -> np.ndarray:
    height, width = color.shape[:2]
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
