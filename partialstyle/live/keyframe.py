"""What the live path keeps between frames: the newest segmented frame and the keyframe.

Both are made once, when a frame is segmented or styled, in the forms the per-frame path
reads (uint8 colour, float32 masks as numpy at processing or flow size), so a carried frame
converts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from partialstyle.compose import layer_colors
from partialstyle.live.plate import BackgroundPlate
from partialstyle.pipeline import FrameAnalysis, Pipeline


def _numpy(mask: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(mask.float().cpu().numpy())


def _at_flow_size(mask: np.ndarray, gray: np.ndarray) -> np.ndarray:
    return cv2.resize(mask, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True, eq=False)
class Segmented:
    """A segmented frame: its analysis (what the style networks work from), its gray frame at
    flow size, how much styled content each pixel shows (coverage, float32 at processing
    size) and the person mask (float32 at flow size)."""

    analysis: FrameAnalysis
    gray: np.ndarray
    coverage: np.ndarray
    person: np.ndarray
    number: int

    @classmethod
    def of(
        cls, pipeline: Pipeline, analysis: FrameAnalysis, gray: np.ndarray, number: int
    ) -> Segmented:
        coverage = _numpy(pipeline.coverage(analysis))
        if analysis.person is None:
            person = np.zeros(gray.shape, np.float32)
        else:
            person = _at_flow_size(_numpy(analysis.person), gray)
        return cls(analysis, gray, coverage, person, number)

    def matches(self, pipeline: Pipeline, gray: np.ndarray) -> bool:
        """Made with the pipeline's current settings, from a frame of the same size."""
        analysis = self.analysis
        return (
            analysis.config == pipeline.config
            and analysis.plan == pipeline.plan
            and self.gray.shape == gray.shape
        )


@dataclass(frozen=True, eq=False)
class Keyframe:
    """A stylization and the frame it was made from.

    color: uint8 h×w×3 at processing size, the styled colour where some region is styled and
    the frame's own elsewhere (what a region that grows into it falls back to); coverage:
    float32 h×w; person: the person mask at flow size; gray: the styled frame at flow size;
    time and number: the frame's time and its count in the stylizer; plate: the styled wall
    this and earlier keyframes saw (`with_plate`).
    """

    color: np.ndarray
    coverage: np.ndarray
    person: np.ndarray
    gray: np.ndarray
    time: float
    number: int
    segmented: Segmented
    plate: BackgroundPlate | None = None

    @classmethod
    def of(cls, segmented: Segmented, layer: torch.Tensor) -> Keyframe:
        """A stylized layer ([4,h,w]: premultiplied colour and coverage) as a keyframe."""
        color, coverage = layer_colors(layer, segmented.analysis.small)
        return cls(
            color=color,
            coverage=coverage,
            person=segmented.person,
            gray=segmented.gray,
            time=segmented.analysis.time,
            number=segmented.number,
            segmented=segmented,
        )

    def with_plate(self, previous: Keyframe | None) -> Keyframe:
        """This keyframe with its background laid over the previous keyframe's plate (a plate
        made with other settings or at another size is not continued)."""
        plate = previous.plate if previous is not None else None
        if (
            plate is None
            or not previous.fits(self.segmented)
            or not plate.fits(self.color, self.gray)
        ):
            plate = BackgroundPlate.empty(self.color.shape, self.gray.shape)
        styled = _at_flow_size(self.coverage, self.gray) > 0.0
        return replace(self, plate=plate.updated(self.color, self.gray, self.person, styled))

    def fits(self, segmented: Segmented) -> bool:
        """Made with the same settings as `segmented`, at the same processing size."""
        mine, theirs = self.segmented.analysis, segmented.analysis
        return (
            mine.config == theirs.config
            and mine.plan == theirs.plan
            and mine.small.shape == theirs.small.shape
        )
