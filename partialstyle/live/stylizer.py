"""The live path, one frame at a time: what every frame costs is read top to bottom here.

The style networks are the costly stage; on a CPU they cannot keep up with a webcam. So a
frame normally gets only the cheap stages and the newest stylization (the keyframe) carried
onto it by optical flow, while the networks refresh the keyframe beside it:

1. the frame as a small gray image (flow size);
2. its masks: segmented (every frame while that is cheap enough, else every second or
   third, `policy.segment_every`), or those of the newest segmented frame moved by flow;
3. the keyframe carried onto it (`carry`), if the keyframe is within the bound
   (`policy.CarryBound`: motion, holes, age). Past the bound the frame waits for the style
   thread's run in progress, or is styled in line: the output gives up frame rate, never
   quality;
4. blended onto the frame at full resolution, in uint8 (`compose.blend_styled`).

Style runs:
- `style_every=N`: every N-th frame in line (reproducible: `partialstyle video
  --style-every N`);
- `style_every=0`: a style thread styles the newest segmented frame again and again, paced
  by `min_style_interval` (OBS asks for pauses when it renders late) only while the
  keyframe is less than half-way to the bound: past that it runs at once, so that its
  result is there before the bound is. It runs at the frame thread's priority: a frame past
  the bound waits for it, so starving it would starve the output, and nothing may. The OBS
  filter and `partialstyle video --realtime`.

A settings change (and its fade, `morph_seconds`) is styled in line at once, whatever the
style thread is doing; a late result made with older settings never replaces a newer keyframe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import torch

from partialstyle.compose import blend_styled
from partialstyle.live import policy
from partialstyle.live.carry import carry
from partialstyle.live.flow import FlowEstimator, Warp, flow_gray, motion, warp
from partialstyle.live.keyframe import Keyframe, Segmented
from partialstyle.live.policy import CarryBound
from partialstyle.pipeline import Pipeline


@dataclass(frozen=True)
class FrameReport:
    """How the last frame was made: "styled" (in line), "still" (the keyframe's own frame,
    unmoved) or "carried"; the keyframe's age (seconds) and number; for a carried frame the
    motion and filled share it was carried over (`CarryBound`'s terms); whether it waited
    for the style thread."""

    how: str
    keyframe: int
    keyframe_age: float
    motion: float = 0.0
    filled: float = 0.0
    waited: bool = False


class LiveStylizer:
    """Drives a `Pipeline` for live video; see the module docstring.

    `process` is called from one thread (the frame thread); `close` from any. The figures
    (`stylizations`, `in_line`, `waits`, `report`) are for logs and statistics.
    """

    def __init__(self, pipeline: Pipeline, style_every: int = 0, bound: CarryBound | None = None):
        if style_every < 0:
            raise ValueError(f"style_every must be 0 (background) or more, got {style_every}")
        self.pipeline = pipeline
        self.style_every = style_every
        self.bound = bound or CarryBound()
        self.min_style_interval = 0.0  # seconds between the starts of two style runs
        self.frame_interval = 0.0  # the source's, when known: sets the segmentation cadence
        self.segment_every = 1
        self.frames = 0
        self.stylizations = 0  # style network runs so far, both threads
        self.in_line = 0  # of which on the frame thread
        self.waits = 0  # frames that waited for the style thread (past the bound)
        self.report: FrameReport | None = None  # how the last frame was made
        self.frame_seconds: deque[float] = deque(maxlen=30)
        self.style_seconds: deque[float] = deque(maxlen=20)
        self._flows = FlowEstimator()
        self._key: Keyframe | None = None
        self._segmented: Segmented | None = None
        self._condition = threading.Condition()
        self._pending: Segmented | None = None  # the newest segmented frame, for the thread
        self._styling = False  # the style thread is inside a run
        self._urgent = False  # the keyframe is half-way to the bound: no pause before the next run
        self._error: BaseException | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        if style_every == 0:
            self._thread = threading.Thread(
                target=self._style_loop, name="partialstyle-style", daemon=True
            )
            self._thread.start()

    @torch.inference_mode()
    def process(self, frame: np.ndarray, timestamp: float | None = None) -> np.ndarray:
        """The frame styled: the keyframe carried onto it, or styled in line."""
        started = time.perf_counter()
        error, self._error = self._error, None
        if error is not None:
            raise error
        now = time.monotonic() if timestamp is None else timestamp
        number, self.frames = self.frames, self.frames + 1
        gray = flow_gray(frame)
        segmented = self._masks(frame, gray, now, number)
        key = self._key
        due = self.style_every > 0 and number % self.style_every == 0
        changed = key is None or not key.fits(segmented)
        if changed or due or self.pipeline.morphing(segmented.analysis):
            out = self._styled_in_line(frame, gray, now, number, segmented)
        else:
            out = self._carried(frame, gray, segmented, key, now)
            if out is None:  # past the bound: a fresh keyframe first
                out = self._refreshed(frame, gray, now, number, segmented, key)
        fresh = self._segmented
        if self._thread is not None and fresh.number == number and self._key.number != number:
            with self._condition:  # the style thread's next job, unless styled just now
                self._pending = fresh
                self._condition.notify_all()
        self.frame_seconds.append(time.perf_counter() - started)
        self._adapt_segmentation()
        return out

    def reset(self) -> None:
        """Forget the stylization (between unrelated clips)."""
        with self._condition:
            self._pending = None
            self._key = None
        self._segmented = None
        self.frames = 0
        self.pipeline.reset()

    def close(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10.0)

    # -- the frame thread's steps ----------------------------------------------------------

    def _masks(self, frame: np.ndarray, gray: np.ndarray, now: float, number: int) -> Segmented:
        """The newest segmented frame: this one when it is due (or the settings changed),
        else the last one (its masks are moved onto this frame where they are used)."""
        segmented, config = self._segmented, self.pipeline.config
        if (
            segmented is not None
            and segmented.matches(self.pipeline, gray)
            and number - segmented.number < self.segment_every
            and config.composes_in_uint8
        ):
            return segmented
        return self._segment(frame, gray, now, number)

    def _segment(self, frame: np.ndarray, gray: np.ndarray, now: float, number: int) -> Segmented:
        analysis = self.pipeline.analyse(frame, now)
        self._segmented = Segmented.of(self.pipeline, analysis, gray, number)
        return self._segmented

    def _carried(
        self, frame: np.ndarray, gray: np.ndarray, segmented: Segmented, key: Keyframe, now: float
    ) -> np.ndarray | None:
        """The keyframe carried onto this frame, or None when that is past the bound."""
        bound = self.bound
        if np.array_equal(gray, key.gray) and np.array_equal(gray, segmented.gray):
            self.report = FrameReport("still", key.number, 0.0)  # unchanged: no age, no limit
            return self._compose(frame, segmented, key.color, segmented.coverage)
        if self._thread is not None and not bound.young_enough(now - key.time):
            return None  # (with style_every=N, N bounds the age, in frames not seconds)
        backward = self._flows(gray, key.gray)
        people = (key.person >= 0.5) | (segmented.person >= 0.5)
        moved = motion(backward, gray.shape[0], people)
        if not bound.near_enough(moved):
            return None
        forward = self._flows(key.gray, gray)
        to_key, to_key_small = Warp(backward, *key.color.shape[:2]), Warp(backward, *gray.shape)
        person, coverage = segmented.person, segmented.coverage
        if segmented.gray is not gray:  # masks of an earlier frame: moved onto this one
            if segmented is key.segmented:
                person, coverage = to_key_small(person), to_key(coverage)
            else:
                to_segmented = self._flows(gray, segmented.gray)
                person, coverage = warp(person, to_segmented), warp(coverage, to_segmented)
        carried = carry(
            key.color, key.person, to_key, to_key_small, forward, person, gray, key.plate
        )
        if not bound.whole_enough(carried.filled):
            return None
        self.report = FrameReport("carried", key.number, now - key.time, moved, carried.filled)
        if bound.half_used(now - key.time, moved, carried.filled) and not self._urgent:
            with self._condition:  # refresh before the bound is reached, pause or not
                self._urgent = True
                self._condition.notify_all()
        return self._compose(frame, segmented, carried.color, coverage)

    def _refreshed(
        self,
        frame: np.ndarray,
        gray: np.ndarray,
        now: float,
        number: int,
        segmented: Segmented,
        stale: Keyframe,
    ) -> np.ndarray:
        """A frame past the bound: carried from the style thread's run in progress once it
        ends (it styles a newer frame than `stale`), else styled in line."""
        waited = False
        if self._thread is not None:
            with self._condition:
                if self._styling:
                    self.waits += 1
                    waited = True
                    self._condition.wait_for(
                        lambda: self._key is not stale or self._stopping or not self._styling,
                        timeout=self.bound.max_wait,
                    )
                key = self._key
            if key is not None and key is not stale and key.fits(segmented):
                out = self._carried(frame, gray, segmented, key, now)
                if out is not None:
                    self.report = replace(self.report, waited=True)
                    return out
        out = self._styled_in_line(frame, gray, now, number, segmented)
        self.report = replace(self.report, waited=waited)
        return out

    def _styled_in_line(
        self, frame: np.ndarray, gray: np.ndarray, now: float, number: int, segmented: Segmented
    ) -> np.ndarray:
        if segmented.number != number:
            segmented = self._segment(frame, gray, now, number)
        key = self._stylize(segmented)
        self.in_line += 1
        self.report = FrameReport("styled", key.number, 0.0)
        return self._compose(frame, segmented, key.color, key.coverage)

    def _compose(
        self, frame: np.ndarray, segmented: Segmented, color: np.ndarray, coverage: np.ndarray
    ) -> np.ndarray:
        """The styled colour blended onto the frame; the pipeline's float compositing for its
        edge-aware upsampling and the mask view (those segment every frame)."""
        config = segmented.analysis.config
        if config.composes_in_uint8:
            return blend_styled(frame, color, coverage)
        analysis = segmented.analysis
        styled = torch.from_numpy(color).to(analysis.small).permute(2, 0, 1).div(255.0)
        weight = torch.from_numpy(coverage).to(analysis.small)
        return self.pipeline.compose(analysis, torch.cat([styled * weight, weight[None]]))

    def _adapt_segmentation(self) -> None:
        seconds = self.frame_seconds
        if len(seconds) < seconds.maxlen or self.frame_interval <= 0.0:
            return
        cadence = policy.segment_every(
            self.segment_every, sum(seconds) / len(seconds), self.frame_interval
        )
        if cadence != self.segment_every:
            self.segment_every = cadence
            seconds.clear()

    # -- style runs (either thread) --------------------------------------------------------

    def _stylize(self, segmented: Segmented) -> Keyframe:
        """Run the networks on a segmented frame; the result becomes the keyframe unless a
        newer frame's already has. No lock is held around the networks: a settings change
        is styled in line while the style thread's run goes on (the pipeline guards its
        own temporal state)."""
        started = time.perf_counter()
        key = Keyframe.of(segmented, self.pipeline.style_layer(segmented.analysis))
        key = key.with_plate(self._key)  # outside the lock: the frame thread need not wait
        with self._condition:
            if self._key is None or self._key.time <= key.time:
                self._key = key
            self.stylizations += 1
            self._condition.notify_all()
        self.style_seconds.append(time.perf_counter() - started)
        return key

    def _style_loop(self) -> None:
        last_start = float("-inf")
        while True:
            with self._condition:
                while not self._stopping and self._pending is None:
                    self._condition.wait()
                if self._stopping:
                    return
                pause = last_start + self.min_style_interval - time.perf_counter()
                if pause > 0 and not self._urgent:  # paced: the newest frame comes meanwhile
                    self._condition.wait_for(lambda: self._stopping or self._urgent, pause)
                    continue
                job, self._pending, self._urgent = self._pending, None, False
                self._styling = True
            try:
                pipeline = self.pipeline
                if (job.analysis.config, job.analysis.plan) == (pipeline.config, pipeline.plan):
                    last_start = time.perf_counter()
                    with torch.inference_mode():
                        self._stylize(job)
                # else: settings changed since; the frame thread styles those in line
            except Exception as error:  # reported by the next `process` call
                self._error = error
            finally:
                with self._condition:
                    self._styling = False
                    self._condition.notify_all()
