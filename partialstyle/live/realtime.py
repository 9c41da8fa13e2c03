"""A clip played through the live path at its own pace, as OBS would show it.

In OBS, frames arrive at the source's rate whether or not the filter is ready: the frame
thread takes the newest one each time it is free (older ones are skipped), the style thread
runs beside it, and each rendered frame shows the newest finished result. `RealtimeStylizer`
does the same with a clip read frame by frame: frame k "arrives" at k / fps seconds of wall
time, is processed only if it is still the newest when the frame thread is free, and output
slot k shows the newest result finished by the time slot k + 1 is due (OBS draws a result
on its next render). So `partialstyle video --realtime` previews and measures, without OBS,
what the filter shows on this machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from partialstyle.live.stylizer import LiveStylizer


@dataclass
class RealtimeRecord:
    """What happened: per output slot, which source frame it shows (None: none yet, the
    source itself is shown) and the keyframe age of that result (source frames)."""

    shown: list[int | None] = field(default_factory=list)
    keyframe_ages: list[float | None] = field(default_factory=list)
    processed: int = 0
    skipped: int = 0

    def summary(self, fps: float) -> str:
        """One line: distinct source frames shown per second, lag and keyframe age."""
        shown = [source for source in self.shown if source is not None]
        seconds = len(self.shown) / fps if self.shown else 0.0
        distinct = len(set(shown)) / seconds if seconds else 0.0
        lags = [slot - source for slot, source in enumerate(self.shown) if source is not None]
        ages = [age for age in self.keyframe_ages if age is not None]
        return (
            f"{distinct:.1f} source frames/s shown, {self.skipped} of "
            f"{self.processed + self.skipped} skipped, lag {np.median(lags or [0]):.0f} "
            f"frames (median), keyframe age {np.median(ages or [0]):.1f} frames (median)"
        )


class RealtimeStylizer:
    """`process(frame)` for frame 0, 1, 2 … of a clip at `fps`, returning output slot k's
    picture (see the module docstring). Sleeps to keep the clip's pace."""

    def __init__(self, stylizer: LiveStylizer, fps: float):
        if not fps > 0:
            raise ValueError(f"fps must be above 0, got {fps}")
        stylizer.frame_interval = 1.0 / fps
        self.stylizer = stylizer
        self.pipeline = stylizer.pipeline
        self.fps = fps
        self.record = RealtimeRecord()
        self._start: float | None = None
        self._index = 0
        # Finished results not yet shown, oldest first: (done at, source frame, picture, age).
        self._results: list[tuple[float, int, np.ndarray, float]] = []
        self._shown: tuple[int, np.ndarray, float] | None = None

    def process(self, frame: np.ndarray) -> np.ndarray:
        index, self._index = self._index, self._index + 1
        if self._start is None:  # the clock starts once the first frame is styled (models
            # loaded, caches warm), as in OBS where the filter has been running for a while
            out = self.stylizer.process(frame, timestamp=0.0)
            self._start = time.perf_counter()
            self._results.append((0.0, 0, out, 0.0))
            self.record.processed += 1
            return self._show(frame)
        arrives, superseded = index / self.fps, (index + 1) / self.fps
        now = self._clock()
        if now < arrives:
            time.sleep(arrives - now)
        if self._clock() < superseded:  # still the newest frame: the frame thread takes it
            out = self.stylizer.process(frame, timestamp=arrives)
            age = self.stylizer.report.keyframe_age * self.fps
            self._results.append((self._clock(), index, out, age))
            self.record.processed += 1
        else:
            self.record.skipped += 1
        return self._show(frame, superseded)  # drawn with what is finished when slot k + 1 is due

    def _show(self, frame: np.ndarray, due: float = 0.0) -> np.ndarray:
        while self._results and self._results[0][0] <= due:
            _, source, out, age = self._results.pop(0)
            self._shown = (source, out, age)
        if self._shown is None:
            self.record.shown.append(None)
            self.record.keyframe_ages.append(None)
            return frame
        source, out, age = self._shown
        self.record.shown.append(source)
        self.record.keyframe_ages.append(age)
        return out

    def reset(self) -> None:
        self.stylizer.reset()
        self.record = RealtimeRecord()
        self._start, self._index, self._results, self._shown = None, 0, [], None

    def close(self) -> None:
        self.stylizer.close()

    def _clock(self) -> float:
        assert self._start is not None
        return time.perf_counter() - self._start
