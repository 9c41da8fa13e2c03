"""File-to-file video restyling with OpenCV (frames only; audio is not carried over)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
from tqdm import tqdm

from partialstyle.errors import PartialStyleError
from partialstyle.pipeline import Pipeline

_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def check_video_output(path: Path) -> None:
    if path.suffix.lower() not in _CODECS:
        raise PartialStyleError(f"cannot write {path.name}: use one of {', '.join(_CODECS)}")
    if not path.parent.exists():
        raise PartialStyleError(f"output folder {path.parent} does not exist")


def restyle_video(pipeline: Pipeline, source: Path, dest: Path, progress: bool = True) -> int:
    """Restyle every frame of `source` into `dest` at the same size and frame rate.

    Writes to a temporary name first, so an interrupted run never leaves a broken `dest`
    (nor destroys an older one). Returns the number of frames written.
    """
    if not source.is_file():
        raise PartialStyleError(f"input video {source} does not exist")
    check_video_output(dest)
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise PartialStyleError(f"cannot open {source} as a video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    partial = dest.with_name(f".{dest.stem}.partial{dest.suffix}")
    fourcc = cv2.VideoWriter_fourcc(*_CODECS[dest.suffix.lower()])
    writer = cv2.VideoWriter(str(partial), fourcc, fps, (width, height))
    if not writer.isOpened():
        capture.release()
        raise PartialStyleError(f"cannot write video {dest}")
    pipeline.reset()
    count = 0
    try:
        with tqdm(total=total, unit="frame", disable=not progress, desc=source.name) as bar:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                writer.write(cv2.cvtColor(pipeline.process(rgb), cv2.COLOR_RGB2BGR))
                count += 1
                bar.update(1)
    except BaseException:
        writer.release()
        partial.unlink(missing_ok=True)
        raise
    finally:
        capture.release()
    writer.release()
    if count == 0:
        partial.unlink(missing_ok=True)
        raise PartialStyleError(f"{source} has no readable frames")
    os.replace(partial, dest)
    return count
