"""File-to-file video restyling: frames with OpenCV, the sound carried over by `video_audio`."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from partialstyle.commands.video_audio import add_audio
from partialstyle.errors import PartialStyleError, one_line
from partialstyle.io import (
    WRITABLE_SUFFIXES,
    check_not_the_input,
    check_writable_folder,
    partial_path,
    quiet_native_stderr,
    remove_stale_partials,
)


class Stylizer(Protocol):
    """What restyles a clip frame by frame: a Pipeline, or the live path's stylizers (the
    protocol, not their classes, so that checking paths does not import torch)."""

    def process(self, frame: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


# A variable-rate clip is written at the rate of its shortest frame gap (repeating frames to
# hold each one until the next), but never faster than this.
_MAX_OUTPUT_FPS = 120.0
# How often (in frames) the free space of the output's disk is looked at during a run: every
# frame, as it costs microseconds and the encoder's output reaches the file in 256 KB steps.
_SPACE_CHECK_EVERY = 1
# The run stops early when the rest of the clip, at the size per frame so far, needs this many
# times the free space (frame sizes vary along a clip; a run that may fit is left to finish).
_SPACE_MARGIN = 1.5


def check_video_output(path: Path) -> None:
    """Fail before any work when the output cannot be written."""
    if path.is_dir():
        raise PartialStyleError(f"output {path} is a folder; name a file, e.g. {path / 'out.mp4'}")
    if path.suffix.lower() not in _CODECS:
        raise PartialStyleError(f"cannot write {path.name}: use one of {', '.join(_CODECS)}")
    check_writable_folder(path.parent)


def check_video_input(source: Path) -> None:
    """Fail before any work when `source` is missing, a picture, or has no readable frame."""
    if source.is_dir():
        raise PartialStyleError(f"input video {source} is a folder, not a video file; name a file")
    if not source.is_file():
        raise PartialStyleError(f"input video {source} does not exist")
    if source.stat().st_size == 0:
        raise PartialStyleError(f"input video {source} is empty (0 bytes); copy or export it again")
    if source.suffix.lower() in WRITABLE_SUFFIXES:
        raise PartialStyleError(
            f"{source} is a picture, not a video; restyle it with `partialstyle image`"
        )
    with quiet_native_stderr():
        capture = cv2.VideoCapture(str(source))
        readable = capture.isOpened() and capture.grab()
        capture.release()
    if not readable:
        raise PartialStyleError(f"cannot read {source} as a video (is it an MP4, MOV, AVI or MKV?)")


@dataclass(frozen=True)
class VideoTiming:
    """How the input frames land on the output's constant frame rate (OpenCV writes no other).

    repeats[i] is how many output frames input frame i fills: all 1 for a constant-rate clip;
    more where a variable-rate clip holds a frame, so every frame keeps its time (±½ frame).
    """

    fps: float
    repeats: tuple[int, ...]

    @property
    def variable(self) -> bool:
        return any(count != 1 for count in self.repeats)


def output_timing(timestamps_ms: list[float], stated_fps: float) -> VideoTiming:
    """The output frame rate and per-frame repeats for frames shown at `timestamps_ms`."""
    fps = stated_fps if stated_fps > 0 else 30.0
    count = len(timestamps_ms)
    gaps = [later - earlier for earlier, later in pairwise(timestamps_ms)]
    if not gaps or min(gaps) <= 0:  # no usable timestamps: frame by frame at the stated rate
        return VideoTiming(fps, (1,) * count)
    if all(abs(gap * fps / 1000.0 - 1.0) <= 0.1 for gap in gaps):
        return VideoTiming(fps, (1,) * count)
    fps = min(1000.0 / min(gaps), _MAX_OUTPUT_FPS)
    start = timestamps_ms[0]
    repeats, written = [], 0
    for later in timestamps_ms[1:]:
        held = max(1, round((later - start) * fps / 1000.0) - written)
        repeats.append(held)
        written += held
    return VideoTiming(fps, (*repeats, 1))


def stated_fps(source: Path) -> float:
    """The frame rate the clip states (30 when it states none)."""
    with quiet_native_stderr():
        capture = cv2.VideoCapture(str(source))
        fps = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
    return fps if fps > 0 else 30.0


def read_timing(source: Path) -> VideoTiming:
    """The clip's frame timestamps, from a pass that only grabs frames (no colour conversion)."""
    with quiet_native_stderr():
        capture = cv2.VideoCapture(str(source))
        stated_fps = capture.get(cv2.CAP_PROP_FPS)
        timestamps = []
        while capture.grab():
            timestamps.append(capture.get(cv2.CAP_PROP_POS_MSEC))
        capture.release()
    return output_timing(timestamps, stated_fps)


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size the encoder writes: OpenCV's writer rounds odd sides down by resampling."""
    return width + width % 2, height + height % 2


def _pad_to(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Repeat the last column and row to reach the encoder's even size (nothing is resampled)."""
    bottom, right = size[1] - bgr.shape[0], size[0] - bgr.shape[1]
    if bottom == 0 and right == 0:
        return bgr
    return cv2.copyMakeBorder(bgr, 0, bottom, 0, right, cv2.BORDER_REPLICATE)


def decoded_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """How many frames of `path` decode, and their (width, height); (0, (0, 0)) if none."""
    with quiet_native_stderr():
        capture = cv2.VideoCapture(str(path))
        size = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        count = 0
        while capture.isOpened() and capture.grab():
            count += 1
        capture.release()
    return count, size if count else (0, 0)


def _check_free_space(partial: Path, dest: Path, written: int, total: int, copies: int) -> None:
    """Fail as soon as the output clearly will not fit: the size of the frames written so far,
    projected to the whole clip (`total` frames, written `copies` times), needs more than the
    free space (with a margin, as the first frames' size is an estimate); and when the disk is
    full. OpenCV's writer reports no write errors, so the disk is looked at; the finished file
    is checked too (`_check_finished`)."""
    free = shutil.disk_usage(partial.parent).free
    kept = "the old file is unchanged" if dest.is_file() else "nothing was written"
    if free == 0:
        raise PartialStyleError(f"the disk holding {dest} is full; {kept}")
    size = partial.stat().st_size
    per_frame = size / max(written, 1)
    needed = per_frame * (max(0, total - written) + (copies - 1) * total)
    if needed > _SPACE_MARGIN * free:
        raise PartialStyleError(
            f"the disk holding {dest} has {_megabytes(free)} free, and the video needs about "
            f"{_megabytes(needed)} more (judged from its first {written} frames); free some "
            f"space or write elsewhere; {kept}"
        )


def _add_audio(frames: Path, source: Path, partial: Path, dest: Path) -> None:
    """The frames and the source's sound into `partial`; a failed write said as for frames."""
    try:
        add_audio(frames, source, partial)
    except OSError as error:
        kept = "the old file is unchanged" if dest.is_file() else "nothing was written"
        reason = error.strerror or one_line(error)
        raise PartialStyleError(f"could not write {dest} ({reason}); {kept}") from None


def _megabytes(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def _has_sound(source: Path, note: Callable[[str], None]) -> bool:
    """Whether `source` has sound to carry over (said in a note when it cannot be known)."""
    try:
        from partialstyle.commands.video_audio import audio_streams  # imports PyAV

        return audio_streams(source) > 0
    except ImportError:
        note(f"PyAV is not installed, so the sound of {source.name} (if any) is not carried over")
        return False


def _stderr_note(line: str) -> None:
    print(f"partialstyle: note: {line}", file=sys.stderr)


def restyle_video(
    pipeline: Stylizer,
    source: Path,
    dest: Path,
    progress: bool = True,
    note: Callable[[str], None] = _stderr_note,
) -> int:
    """Restyle every frame of `source` into `dest` at the same size and timing, with the
    source's sound (every audio stream, copied as it is; see `video_audio`).

    `pipeline` is a Pipeline (every frame styled) or a live-path stylizer (style carried
    along, `partialstyle.live`).

    Writes to a temporary name first and replaces `dest` only once the finished file decodes
    with every frame, so a full disk or an interrupted run never leaves a broken `dest` (nor
    destroys an older one). A variable-rate clip is written at a constant rate with frames
    held to keep their times; odd sizes are padded by one repeated row or column for the
    encoder. Both are reported through `note`. Returns the number of input frames restyled.
    """
    check_video_input(source)
    check_video_output(dest)
    check_not_the_input(source, dest)
    timing = read_timing(source)
    with quiet_native_stderr():
        capture = cv2.VideoCapture(str(source))
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    total = len(timing.repeats) or None
    encoded = even_size(width, height)
    if encoded != (width, height):
        note(
            f"{width}×{height} has an odd side, which the encoder cannot write; "
            f"{dest.name} is {encoded[0]}×{encoded[1]} (last column/row repeated)"
        )
    if timing.variable:
        note(
            f"{source.name} has a variable frame rate; {dest.name} is written at "
            f"{timing.fps:.3g} fps with frames held to keep their times"
        )
    remove_stale_partials(dest)
    partial, with_sound = partial_path(dest), partial_path(dest, "sound")
    sound = _has_sound(source, note)
    fourcc = cv2.VideoWriter_fourcc(*_CODECS[dest.suffix.lower()])
    with quiet_native_stderr():
        writer = cv2.VideoWriter(str(partial), fourcc, timing.fps, encoded)
    if not writer.isOpened():
        capture.release()
        partial.unlink(missing_ok=True)
        raise PartialStyleError(f"OpenCV cannot encode {dest.suffix} video here; try .avi")
    pipeline.reset()
    planned = sum(timing.repeats)  # output frames
    copies = 2 if sound else 1  # with sound, the frames are written once more beside it
    count = written = 0
    try:
        with tqdm(total=total, unit="frame", disable=not progress, desc=source.name) as bar:
            while True:
                with quiet_native_stderr():
                    ok, bgr = capture.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                styled = _pad_to(cv2.cvtColor(pipeline.process(rgb), cv2.COLOR_RGB2BGR), encoded)
                held = timing.repeats[count] if count < len(timing.repeats) else 1
                with quiet_native_stderr():
                    for _ in range(held):
                        writer.write(styled)
                written += held
                count += 1
                if count % _SPACE_CHECK_EVERY == 0:
                    _check_free_space(partial, dest, written, planned, copies)
                bar.update(1)
        with quiet_native_stderr():
            writer.release()
        if count == 0:
            raise PartialStyleError(f"{source} has no readable frames")
        _check_finished(partial, dest, written, encoded)
        if sound:
            _add_audio(partial, source, with_sound, dest)
            _check_finished(with_sound, dest, written, encoded)
            os.replace(with_sound, dest)
            partial.unlink()
        else:
            os.replace(partial, dest)
    except BaseException:
        with quiet_native_stderr():
            writer.release()
        partial.unlink(missing_ok=True)
        with_sound.unlink(missing_ok=True)
        raise
    finally:
        capture.release()
    return count


def _check_finished(partial: Path, dest: Path, written: int, size: tuple[int, int]) -> None:
    """The finished file must decode with every frame at its size before it replaces `dest`."""
    decoded, decoded_size = decoded_frames(partial)
    if decoded == written and decoded_size == size:
        return
    kept = "the old file is unchanged" if dest.is_file() else "nothing was written"
    raise PartialStyleError(
        f"could not write {dest} completely (the finished file decodes {decoded} of {written} "
        f"frames; is the disk full?); {kept}"
    )
