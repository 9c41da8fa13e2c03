"""Carry a stylization onto a newer frame with dense optical flow.

Style networks cannot run on every frame of a live video on a CPU, but a stylization made a
few frames ago can be moved along with what moved since: the flow from the current frame
back to the styled one tells each pixel where to fetch its styled colour. Pixels the flow
cannot vouch for (what was hidden in the styled frame, e.g. the wall behind a person who
stepped aside) are found with a forward-backward check and a region check, and filled from
the styled wall an earlier keyframe saw there (`plate`) or else from nearby styled pixels
of the same region. How far a keyframe may be carried is
`partialstyle.live.policy`'s business; this module only moves pixels.

All arrays are numpy: uint8 h×w×3 colours at processing size, float32 masks, flows and the
gray frames they come from at flow size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from partialstyle.live.flow import Warp
from partialstyle.live.plate import BackgroundPlate
from partialstyle.style import fused_norm

# Forward-backward consistency (Sundaram, Brox and Keutzer 2010): a pixel whose round trip
# misses by more than this share of the motion, plus a constant (flow pixels), is occluded.
_ROUND_TRIP_SHARE = 0.05
_ROUND_TRIP_PIXELS = 0.6
# A pixel whose styled source lies in another region (person vs. background) is not taken.
_REGION_CHANGE = 0.5
# How far from the person's outline (flow pixels) a failed round trip counts as occlusion.
_OUTLINE_REACH = 6
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_OUTLINE_KERNEL = np.ones((2 * _OUTLINE_REACH + 1, 2 * _OUTLINE_REACH + 1), np.uint8)
# Holes are filled with the mean of valid styled pixels within this share of the height.
_FILL_RADIUS_SHARE = 1 / 12
# The local means are worked out at flow size divided by this.
_COARSE = 4


@dataclass(frozen=True)
class Carried:
    """A stylization moved onto a frame: its styled colour (uint8 h×w×3, defined everywhere)
    and the share of pixels that had to be filled because the styled frame did not see them."""

    color: np.ndarray
    filled: float


def round_trip_valid(backward: Warp, forward: np.ndarray) -> np.ndarray:
    """Where following `backward` (now → styled, a warp at flow size) and then `forward`
    (styled → now) returns to the start: a bool map at flow size. Elsewhere the styled frame
    did not see what the current frame shows there (occlusion) or the flow is unreliable."""
    kernels = fused_norm.kernels()
    if kernels is not None and forward.dtype == np.float32 and forward.shape[:2] == backward.size:
        # One pass of the compiled kernel, sampling along the warp's own maps: the same test.
        whole, fraction = (torch.from_numpy(m) for m in backward.maps)
        valid = kernels.round_trip_valid(
            whole,
            fraction.view(torch.int16),
            torch.from_numpy(np.ascontiguousarray(backward.flow)),
            torch.from_numpy(np.ascontiguousarray(forward)),
            _ROUND_TRIP_SHARE,
            _ROUND_TRIP_PIXELS,
        )
        return valid.numpy()
    there = backward(forward)
    backward = backward.flow
    miss_x, miss_y = backward[..., 0] + there[..., 0], backward[..., 1] + there[..., 1]
    reach = backward[..., 0] ** 2 + backward[..., 1] ** 2 + there[..., 0] ** 2
    reach += there[..., 1] ** 2
    return miss_x**2 + miss_y**2 <= _ROUND_TRIP_SHARE * reach + _ROUND_TRIP_PIXELS**2


def occluded(
    backward: Warp, forward: np.ndarray, key_person: np.ndarray, person: np.ndarray
) -> np.ndarray:
    """Pixels (bool, flow size) whose carried colour cannot be trusted: the styled pixel
    comes from the other region (the wall a person uncovered samples the key where the
    person stood) or, near the person's outline, the round trip fails. Inside a region a
    failed round trip (flat, glossy or fast surfaces) keeps its carried colour: a local mean
    there looks worse than a slightly misplaced stroke.

    key_person: the keyframe's person mask moved onto this frame; person: this frame's.
    """
    other_region = np.abs(key_person - person) >= _REGION_CHANGE
    outline = cv2.dilate(
        cv2.morphologyEx((person >= 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, _CROSS),
        _OUTLINE_KERNEL,
    )
    return other_region | (~round_trip_valid(backward, forward) & (outline > 0))


def fill_holes(color: np.ndarray, holes: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Fill the `holes` of `color` (uint8 h×w×3, changed in place) with the mean of the
    other pixels nearby: person pixels from person pixels and background from background
    (`region`: the person mask), so a hole behind a moving person takes the wall's styled
    texture, not the person's. A hole with no pixel of its region near keeps its colour.

    holes (bool) and region (float32) are at flow size. The local means are smooth (a
    window a sixth of the height across), so they are worked out at a quarter of that size
    and scaled up.
    """
    height, width = color.shape[:2]
    coarse = (max(4, holes.shape[1] // _COARSE), max(4, holes.shape[0] // _COARSE))
    side = 2 * max(1, round(coarse[1] * _FILL_RADIUS_SHARE)) + 1
    color_coarse = cv2.resize(color, coarse, interpolation=cv2.INTER_AREA).astype(np.float32)
    valid = (~holes).astype(np.float32)
    person = region >= 0.5
    for inside in (person, ~person):
        wanted = holes & inside
        if not wanted.any():
            continue
        weight = cv2.resize(valid * inside, coarse, interpolation=cv2.INTER_AREA)
        sums = cv2.blur(color_coarse * weight[..., None], (side, side))
        counts = cv2.blur(weight, (side, side))
        fills = np.zeros_like(sums)
        np.divide(sums, counts[..., None], out=fills, where=counts[..., None] > 1e-3)
        fillable = wanted & cv2.resize(
            (counts > 1e-3).astype(np.uint8), wanted.shape[::-1], interpolation=cv2.INTER_NEAREST
        ).astype(bool)
        fills = cv2.resize(fills.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
        where = cv2.resize(
            fillable.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
        )
        cv2.copyTo(fills, where, color)
    return color


def carry(
    color: np.ndarray,
    key_person: np.ndarray,
    backward: Warp,
    backward_small: Warp,
    forward: np.ndarray,
    person: np.ndarray,
    gray: np.ndarray,
    plate: BackgroundPlate | None = None,
) -> Carried:
    """A keyframe's styled `color` (uint8 h×w×3) carried onto the current frame.

    key_person: the keyframe's person mask at flow size; backward and backward_small: the
    warp from the current frame to the keyframe at processing and at flow size; forward:
    the flow the other way (key → current, flow size); person: the current frame's person
    mask and gray the current frame, at flow size; plate: the styled background seen by
    earlier keyframes, which fills the wall a person uncovered first. `filled` counts the
    pixels left to local means.
    """
    moved = backward(color)
    holes = occluded(backward_small, forward, backward_small(key_person), person)
    if plate is not None:
        # Wall the keyframe did not see: holes, and where the person stood in the keyframe
        # (flow drags nearby wall strokes over those; a standing wall is best taken as seen).
        hidden = (person < 0.5) & (holes | (key_person >= 0.5))
        holes &= ~plate.fill(moved, hidden, gray)
    filled = float(holes.mean())
    if filled > 0.0:
        fill_holes(moved, holes, person)
    return Carried(moved, filled)
