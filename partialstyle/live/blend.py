"""The live path's compositing: a styled colour image blended onto the frame, in uint8.

A live frame's only full-resolution work: scale the styled colour and its coverage from
processing size to the frame's and blend them onto it, with OpenCV's vectorised uint8
routines (no float copy of the frame). Where the coverage is 0 (a region styled `none`) the
frame's pixels come out exactly as they went in.
"""

from __future__ import annotations

import cv2
import numpy as np


def blend_styled(frame: np.ndarray, color: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """frame·(1 − coverage) + color·coverage at the frame's size; alpha kept.

    frame: uint8 H×W×3 or H×W×4; color: uint8 h×w×3 (processing size); coverage: float32
    h×w in [0, 1].
    """
    height, width = frame.shape[:2]
    if color.shape[:2] != (height, width):
        color = cv2.resize(color, (width, height), interpolation=cv2.INTER_LINEAR)
        coverage = cv2.resize(coverage, (width, height), interpolation=cv2.INTER_LINEAR)
    out = frame.copy()
    rows, columns = _styled_box(coverage)
    if rows.start >= rows.stop:
        return out  # nothing styled: the frame as it is
    weight = np.clip(coverage[rows, columns], 0.0, 1.0)
    part = np.ascontiguousarray(frame[rows, columns, :3])
    out[rows, columns, :3] = cv2.blendLinear(color[rows, columns], part, weight, 1.0 - weight)
    return out


def _styled_box(coverage: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns that hold every pixel with some coverage (only those blend)."""
    rows = np.flatnonzero(coverage.max(1) > 0.0)
    columns = np.flatnonzero(coverage.max(0) > 0.0)
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)
