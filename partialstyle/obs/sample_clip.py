"""A short looping clip of a real person, for `partialstyle obs demo` and the OBS tests.

It stands in for a webcam: the astronaut photo that ships with partialstyle, sitting on a
plain backdrop and swaying a little (or standing still, so frames can be compared); or two of
her, apart, for per-person styles.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterable
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


def sliding_shifts(count: int, speed: int) -> list[int]:
    """The person's shift in each frame of a clip where they slide `speed` pixels a frame to
    the right for half the clip and back for the other half (a turn of direction; looped,
    the clip has no jump): motion that is known exactly, for measuring the live path."""
    start = -speed * (count // 2) // 2
    return [start + speed * min(index, count - index) for index in range(count)]


def write_sample_clip(
    path: Path,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    seconds: float = 2.0,
    sway: int = 12,
    people: int = 1,
) -> Path:
    """Write a clip every OBS's ffmpeg decodes; sway=0 keeps it still.

    An .mp4 is MPEG-4 part 2 (small). An .avi is Motion JPEG at a fixed quantizer, written
    by the ffmpeg program: every frame is coded on its own and alike, so the frames of a
    still clip decode to exactly the same pixels, which frame-exact comparisons need (in an
    .mp4 the predicted frames drift by a level or so, and style networks turn that into
    visibly different brush strokes on smooth walls).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    count = max(1, round(seconds * fps))
    frames = (
        sample_frame(width, height, round(sway * math.sin(2 * math.pi * i / count)), people)
        for i in range(count)
    )
    return write_clip(path, frames, width, height, fps)


def write_clip(path: Path, frames: Iterable[np.ndarray], width: int, height: int, fps: int) -> Path:
    """Write RGB frames as an .avi (Motion JPEG, see `write_sample_clip`) or an .mp4."""
    if path.suffix.lower() == ".avi":
        return _write_mjpeg(path, frames, width, height, fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"could not write a video to {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def _write_mjpeg(
    path: Path, frames: Iterable[np.ndarray], width: int, height: int, fps: int
) -> Path:
    command = [
        "ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
        "-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj444p", str(path),
    ]  # fmt: skip
    encoder = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for frame in frames:
        encoder.stdin.write(np.ascontiguousarray(frame).tobytes())
    _, errors = encoder.communicate()
    if encoder.returncode != 0:
        raise RuntimeError(f"ffmpeg could not write {path}: {errors.decode(errors='replace')}")
    return path
