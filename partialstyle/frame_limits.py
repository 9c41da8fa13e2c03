"""The frame sizes every command and the OBS filter accept, checkable without torch
(`partialstyle.frames.check_frame` applies them to frames)."""

from __future__ import annotations

MIN_SIDE = 32
MAX_SIDE = 3840
MAX_PIXELS = 3840 * 2160


def frame_size_problem(width: int, height: int) -> str | None:
    """Why a width×height frame is refused (outside 32×32 to 3840×2160), or None."""
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        return f"frame size {width}×{height} is outside {MIN_SIDE}×{MIN_SIDE} to 3840×2160"
    if height * width > MAX_PIXELS:
        return f"frame size {width}×{height} has more pixels than 3840×2160"
    return None
