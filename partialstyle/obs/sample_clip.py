"""A short looping clip of a real person, for `partialstyle obs demo` and the OBS tests.

It stands in for a webcam: the astronaut photo that ships with partialstyle, sitting on a
plain backdrop and swaying a little (or standing still, so frames can be compared); or two of
her, apart, for per-person styles.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

PHOTO = Path(__file__).resolve().parent.parent / "data" / "astronaut.jpg"


def sample_frame(
    width: int = 640, height: int = 360, shift: int = 0, people: int = 1
) -> np.ndarray:
    """One RGB frame: the photo scaled to the frame's height, `shift` pixels right of centre.

    With people=2 the photo appears twice, side by side with a gap of wall between them (two
    people apart, for per-person styles), each as large as fits, standing on the bottom edge.
    """
    photo = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    gap = width // 7 if people == 2 else 0
    side = min(height, (width - gap) // people)
    photo = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    # A soft blue-grey wall with a lighter band: structure without another subject.
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    columns = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    shade = 0.55 + 0.25 * np.sin(columns * math.pi) - 0.1 * rows
    frame = (np.stack([shade * 150, shade * 165, shade * 185], axis=-1)).astype(np.uint8)
    first = (width - people * side - (people - 1) * gap) // 2 + shift
    for index in range(people):
        left = first + index * (side + gap)
        visible = slice(max(0, -left), min(side, width - left))
        frame[height - side :, max(0, left) : min(width, left + side)] = photo[:, visible]
    return frame


def write_sample_clip(
    path: Path,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    seconds: float = 2.0,
    sway: int = 12,
    people: int = 1,
) -> Path:
    """Write an mp4 (MPEG-4 part 2, which every OBS's ffmpeg decodes); sway=0 keeps it still."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"could not write a video to {path}")
    try:
        count = max(1, round(seconds * fps))
        for index in range(count):
            shift = round(sway * math.sin(2 * math.pi * index / count))
            frame = sample_frame(width, height, shift, people)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path
