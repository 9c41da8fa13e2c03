"""Frame numbers drawn into a clip's pixels, so an output frame can be traced to its source.

A row of dark/light blocks in the top-left corner (on the wall, never on the person) spells
the frame's number in binary. With the background styled `none`, the filter shows those
pixels exactly as they were in the source frame it composed the output from.
"""

from __future__ import annotations

import numpy as np

from partialstyle.obs.sample_clip import sample_frame, sliding_shifts

BITS = 8
BLOCK = 12
GAP = 4
TOP = LEFT = 6
DARK, LIGHT = 25, 230


def _block(bit: int) -> tuple[slice, slice]:
    left = LEFT + bit * (BLOCK + GAP)
    return slice(TOP, TOP + BLOCK), slice(left, left + BLOCK)


def tag(frame: np.ndarray, number: int) -> np.ndarray:
    """The frame with `number` (0 … 255) written into it."""
    frame = frame.copy()
    for bit in range(BITS):
        frame[_block(bit)] = LIGHT if number >> bit & 1 else DARK
    return frame


def read_tag(frame: np.ndarray) -> int | None:
    """The number written into a frame, or None when the blocks are not clearly dark/light."""
    number = 0
    for bit in range(BITS):
        rows, columns = _block(bit)
        inner = frame[rows.start + 3 : rows.stop - 3, columns.start + 3 : columns.stop - 3]
        level = float(inner.mean())
        if level > 180:
            number |= 1 << bit
        elif level > 75:
            return None
    return number


def sliding_frames(count: int, width: int, height: int, speed: int) -> list[np.ndarray]:
    """The sample person sliding `speed` pixels a frame and back (`sliding_shifts`), tagged."""
    shifts = sliding_shifts(count, speed)
    return [tag(sample_frame(width, height, shift), i) for i, shift in enumerate(shifts)]
