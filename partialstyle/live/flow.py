"""Dense optical flow at a small size, and backward warping with it.

Flow is what carries a stylization (and masks) from the frame they were made on to a newer
one. It is estimated on small gray frames (DIS, OpenCV's ultrafast preset, about 1 ms at
320×180) and scaled up to whatever it moves.

All arrays here are numpy: uint8 gray frames, float32 H×W×2 flows (pixels, x then y).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from partialstyle.style import fused_norm

# Flow is estimated on frames at most this wide: DIS takes about 1 ms at 320×180 here and the
# motion a keyframe may be carried over (partialstyle.live.policy) is well within its range.
FLOW_WIDTH = 320


def flow_size(height: int, width: int) -> tuple[int, int]:
    """The (h, w) flow is estimated at: the frame scaled to FLOW_WIDTH wide, never up."""
    if width <= FLOW_WIDTH:
        return height, width
    return max(8, round(height * FLOW_WIDTH / width)), FLOW_WIDTH


def flow_gray(frame: np.ndarray) -> np.ndarray:
    """An RGB(A) uint8 frame as the small gray image flow is estimated on."""
    height, width = flow_size(*frame.shape[:2])
    conversion = cv2.COLOR_RGBA2GRAY if frame.shape[2] == 4 else cv2.COLOR_RGB2GRAY
    # Gray first, then shrunk: OpenCV's conversion is one vectorised pass, and shrinking one
    # channel costs a fraction of three or four (0.5 against 1.0 ms for a 1280×720 RGBA
    # frame); the two orders differ by one level of rounding at most.
    gray = cv2.cvtColor(frame, conversion)
    if (height, width) != gray.shape:
        gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    return gray


class FlowEstimator:
    """Dense optical flow between two gray frames (DIS, ultrafast preset).

    Not thread-safe (DIS keeps buffers): use one per thread.
    """

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    def __call__(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """flow[y, x] such that source[y, x] ≈ target[(y, x) + flow[y, x]], in pixels."""
        return self._dis.calc(source, target, None)


def motion(flow: np.ndarray, height: int, where: np.ndarray | None = None) -> float:
    """How far things moved, as a share of the frame height `height` the flow was estimated
    at: the 90th percentile of the flow's length (on every second pixel of every second row)
    over the pixels `where` is true (the people: a person who fills a tenth of the frame
    must count, and the flow of the wall around them, smeared and wild where they uncover
    it, must not), or over the whole frame when `where` is None or marks too little."""
    flow = flow[::2, ::2]
    length = np.sqrt(flow[..., 0] * flow[..., 0] + flow[..., 1] * flow[..., 1])
    if where is not None:
        where = where[::2, ::2]
        if where.mean() >= 0.01:
            length = length[where]
    return float(np.percentile(length, 90)) / height


def scaled_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """`flow` resized to height×width, its vectors scaled with it."""
    if flow.shape[:2] == (height, width):
        return flow
    scale_x, scale_y = width / flow.shape[1], height / flow.shape[0]
    flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    flow[..., 0] *= scale_x
    flow[..., 1] *= scale_y
    return flow


_grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    grid = _grids.get((height, width))
    if grid is None:
        columns, rows = np.meshgrid(
            np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
        )
        grid = _grids[height, width] = (columns, rows)
    return grid


class Warp:
    """Backward warping along one flow, ready to apply to several images of one size.

    Sampling an image at each pixel plus its flow (bilinear); `flow` may be smaller than the
    images (estimated at flow size): it is scaled up, vectors included. Samples outside the
    image take the nearest edge pixel.
    """

    def __init__(self, flow: np.ndarray, height: int, width: int):
        self.size = (height, width)
        self._flow = flow
        kernels = fused_norm.kernels()
        if kernels is not None and flow.dtype == np.float32:
            # One pass of the compiled kernel: the same maps, without the full-size flow.
            whole, fraction = kernels.flow_maps(torch.from_numpy(flow), height, width)
            self._maps = (whole.numpy(), fraction.numpy().view(np.uint16))
            return
        flow = self.flow
        columns, rows = _grid(height, width)
        # Fixed-point maps (1/32-pixel steps, plenty for styled texture): OpenCV's fast path
        # when one warp serves several images.
        self._maps = cv2.convertMaps(flow[..., 0] + columns, flow[..., 1] + rows, cv2.CV_16SC2)

    @property
    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each pixel samples, in OpenCV's fixed-point form: whole pixels (int16 H×W×2,
        x then y) and 1/32-pixel fractions (uint16 H×W, row fraction × 32 + column's)."""
        return self._maps

    @functools.cached_property
    def flow(self) -> np.ndarray:
        """The flow at the warp's size, its vectors scaled with it."""
        return scaled_flow(self._flow, *self.size)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != self.size:
            raise ValueError(f"a warp for {self.size} got an image of {image.shape[:2]}")
        return cv2.remap(image, *self._maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` (any dtype) warped backward along `flow` once; see `Warp`."""
    return Warp(flow, *image.shape[:2])(image)
