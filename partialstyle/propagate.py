"""Carry a stylization onto a newer frame with dense optical flow.

Style networks cannot run on every frame of a live video on a CPU, but a stylization made a
few frames ago can be moved along with what moved since: dense optical flow (OpenCV's DIS,
at a low resolution) from the current frame back to the styled one tells each pixel where
to fetch its styled colour. Pixels the flow cannot vouch for (what was hidden in the styled
frame, e.g. the wall behind a person who stepped aside) are found with a forward-backward
check and filled from nearby styled pixels of the same region.

All arrays here are numpy: float32 H×W×C images, uint8 gray frames, float32 H×W×2 flows.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Flow is estimated on frames at most this wide: DIS takes about 1 ms at 320×180 here and
# motion between two stylizations a few frames apart is well within its search range.
FLOW_WIDTH = 320
# Forward-backward consistency (Sundaram, Brox and Keutzer 2010): a pixel whose round trip
# misses by more than this share of the motion, plus a constant (flow pixels), is occluded.
_ROUND_TRIP_SHARE = 0.05
_ROUND_TRIP_PIXELS = 0.6
# A pixel whose styled source lies in another region (person vs. background) is not taken.
_REGION_CHANGE = 0.5
# How far from the person's outline (flow pixels) a failed round trip counts as occlusion.
_OUTLINE_REACH = 6
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
# Holes are filled with the mean of valid styled pixels within this share of the height.
_FILL_RADIUS_SHARE = 1 / 12


def flow_size(height: int, width: int) -> tuple[int, int]:
    """The (h, w) flow is estimated at: the frame scaled to FLOW_WIDTH wide, never up."""
    if width <= FLOW_WIDTH:
        return height, width
    return max(8, round(height * FLOW_WIDTH / width)), FLOW_WIDTH


def flow_gray(frame: np.ndarray) -> np.ndarray:
    """An RGB(A) uint8 frame as the small gray image flow is estimated on."""
    conversion = cv2.COLOR_RGBA2GRAY if frame.shape[2] == 4 else cv2.COLOR_RGB2GRAY
    gray = cv2.cvtColor(frame, conversion)
    height, width = flow_size(*gray.shape)
    if (height, width) == gray.shape:
        return gray
    return cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)


class FlowEstimator:
    """Dense optical flow between two gray frames (DIS, ultrafast preset).

    Not thread-safe (DIS keeps buffers): use one per thread.
    """

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    def __call__(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """flow[y, x] such that source[y, x] ≈ target[(y, x) + flow[y, x]], in pixels."""
        return self._dis.calc(source, target, None)


def round_trip_valid(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Where following `backward` (now → styled) and then `forward` (styled → now) returns
    to the start: a float32 0/1 map at flow size. Elsewhere the styled frame did not see
    what the current frame shows there (occlusion) or the flow is unreliable."""
    there = warp(forward, backward)
    miss_x, miss_y = backward[..., 0] + there[..., 0], backward[..., 1] + there[..., 1]
    motion = backward[..., 0] ** 2 + backward[..., 1] ** 2 + there[..., 0] ** 2
    motion += there[..., 1] ** 2
    miss = miss_x**2 + miss_y**2
    return (miss <= _ROUND_TRIP_SHARE * motion + _ROUND_TRIP_PIXELS**2).astype(np.float32)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    columns, rows = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    return columns, rows


_grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `image` at each pixel plus its flow (backward warping, bilinear).

    `flow` may be smaller than `image` (estimated at flow size): it is scaled up, vectors
    included. Samples outside the image take the nearest edge pixel.
    """
    height, width = image.shape[:2]
    if flow.shape[:2] != (height, width):
        scale_x, scale_y = width / flow.shape[1], height / flow.shape[0]
        flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= scale_x
        flow[..., 1] *= scale_y
    grid = _grids.get((height, width))
    if grid is None:
        grid = _grids[height, width] = _grid(height, width)
    # Fixed-point maps: OpenCV's fast path (1/32-pixel steps, plenty for styled texture).
    map_xy, map_fraction = cv2.convertMaps(
        flow[..., 0] + grid[0], flow[..., 1] + grid[1], cv2.CV_16SC2
    )
    return cv2.remap(image, map_xy, map_fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def fill_holes(color: np.ndarray, valid: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Fill the invalid pixels of `color` (uint8 h×w×3, changed in place) with the mean of
    valid ones nearby: person pixels from person pixels and background from background
    (`region`: the person mask), so a hole behind a moving person takes the wall's styled
    texture, not the person's. A hole with no valid pixel of its region near keeps its
    colour (styled, if from the wrong place).

    valid, region: float32 0..1 maps at a smaller size (flow size): the fill is a local
    mean, worked out at that size and scaled up.
    """
    if valid.min() >= 0.5:
        return color
    height, width = color.shape[:2]
    small = (valid.shape[1], valid.shape[0])
    side = 2 * max(2, round(valid.shape[0] * _FILL_RADIUS_SHARE)) + 1
    color_small = cv2.resize(color, small, interpolation=cv2.INTER_AREA).astype(np.float32)
    person = (region >= 0.5).astype(np.float32)
    fills = np.zeros_like(color_small)
    fillable = np.zeros(valid.shape, bool)
    for inside in (person, 1.0 - person):
        weight = valid * inside
        sums = cv2.blur(color_small * weight[..., None], (side, side))
        counts = cv2.blur(weight, (side, side))
        here = (inside > 0.5) & (counts > 1e-3)
        np.divide(sums, counts[..., None], out=fills, where=here[..., None])
        fillable |= here
    holes = ((valid < 0.5) & fillable).astype(np.uint8)
    fills = cv2.resize(fills.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    holes = cv2.resize(holes, (width, height), interpolation=cv2.INTER_NEAREST)
    cv2.copyTo(fills, holes, color)
    return color


@dataclass(frozen=True)
class Keyframe:
    """A stylization at processing size and the frame it was made from.

    color: uint8 h×w×3, the styled colour (the frame's own where no region is styled).
    person: the person mask at flow size (float32). gray: the styled frame at flow size.
    """

    color: np.ndarray
    person: np.ndarray
    gray: np.ndarray

    @classmethod
    def build(cls, color: np.ndarray, person: np.ndarray, gray: np.ndarray) -> Keyframe:
        """color: uint8 h×w×3; person: float32 h×w; gray: uint8 at flow size."""
        small = (gray.shape[1], gray.shape[0])
        person = cv2.resize(person, small, interpolation=cv2.INTER_AREA)
        return cls(np.ascontiguousarray(color), person, gray)


def propagate(
    key: Keyframe, gray: np.ndarray, person: np.ndarray, flows: FlowEstimator
) -> tuple[np.ndarray, float]:
    """The keyframe's styled colour carried onto the frame whose flow-size gray is `gray`.

    person: the current frame's person mask at flow size (float32). Returns the styled
    colour (uint8 h×w×3 at processing size), defined everywhere, and how far things moved
    since the keyframe (90th percentile of the flow's length, in flow-size pixels).
    """
    motion = 0.0
    if np.array_equal(gray, key.gray):  # nothing moved: no flow, no resampling
        color, key_person = key.color.copy(), key.person
        valid = np.ones(person.shape, np.float32)
    else:
        backward = flows(gray, key.gray)
        forward = flows(key.gray, gray)
        valid = round_trip_valid(backward, forward)
        motion = float(np.percentile(np.hypot(backward[..., 0], backward[..., 1]), 90))
        color = warp(key.color, backward)
        key_person = warp(key.person, backward)
    # Occluded: the styled pixel comes from another region (the wall a person uncovered
    # samples the key where the person stood), or, near the person's outline, the round
    # trip fails. Inside a region a failed round trip (flat, glossy or fast surfaces) keeps
    # its warped colour: a local mean there looks worse than a slightly misplaced stroke.
    same_region = np.abs(key_person - person) < _REGION_CHANGE
    outline = cv2.dilate(
        cv2.morphologyEx((person >= 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, _CROSS),
        np.ones((2 * _OUTLINE_REACH + 1, 2 * _OUTLINE_REACH + 1), np.uint8),
    )
    valid = same_region & ((valid > 0.5) | (outline == 0))
    return fill_holes(color, valid.astype(np.float32), person), motion
