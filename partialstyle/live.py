"""Live output: every frame comes out styled now, from the newest stylization moved along.

The style networks are the costly stage; on a CPU they cannot keep up with a webcam. So
every frame gets the cheap stages (segmentation, compositing) and the newest stylization
carried onto it by optical flow (`partialstyle.propagate`), while the networks refresh that
stylization as often as the machine allows:

- `style_every=N`: on every N-th frame, in line (reproducible: `partialstyle video
  --style-every N`);
- `style_every=0`: in a background thread that always takes the newest frame (the OBS
  filter), paced by `min_style_interval`.

A region styled `none` always shows the current frame's exact pixels, and a frame whose
settings differ from the newest stylization's (a style change) is styled in line, as is
every frame while a changed style fades in (`morph_seconds`), so a change shows on the very
next frame and fades smoothly.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import torch

from partialstyle.frames import to_image, to_uint8
from partialstyle.pipeline import FrameAnalysis, Pipeline
from partialstyle.propagate import FlowEstimator, Keyframe, flow_gray, propagate, warp

# The style thread runs this much nicer than the frame thread (as nice as Linux allows for
# the inference process at nice 10), so per-frame work comes first.
STYLE_THREAD_NICE = 9
# Motion since the keyframe (flow-size pixels, 90th percentile) beyond which a carried frame
# becomes the keyframe itself: DIS's ultrafast preset is reliable over short distances.
REANCHOR_MOTION = 6.0
# Coverage above this counts as styled when a layer becomes a keyframe.
_DEFINED = 1e-3


@dataclass(frozen=True, eq=False)
class _Key:
    """A keyframe, the stylized layer it came from, and the settings, frame size and frame
    time it was made with."""

    keyframe: Keyframe
    layer: torch.Tensor
    config: object
    plan: object
    size: tuple[int, ...]
    time: float

    @property
    def settings(self) -> tuple[object, object, tuple[int, ...], float]:
        return self.config, self.plan, self.size, self.time

    def fits(self, analysis: FrameAnalysis) -> bool:
        return (
            self.config == analysis.config
            and self.plan == analysis.plan
            and self.size == tuple(analysis.small.shape)
        )


def _keyframe(analysis: FrameAnalysis, layer: torch.Tensor, gray: np.ndarray) -> _Key:
    """A stylized layer as a keyframe: the styled colour where some region is styled, the
    frame's own colour elsewhere (what a region that grows into it falls back to)."""
    coverage = layer[3]
    color = layer[:3] / coverage.clamp(min=_DEFINED)
    color = torch.where(coverage > _DEFINED, color, analysis.small)
    person = analysis.person if analysis.person is not None else torch.zeros_like(coverage)
    keyframe = Keyframe.build(_uint8(color), person.float().cpu().numpy(), gray)
    size = tuple(analysis.small.shape)
    return _Key(keyframe, layer, analysis.config, analysis.plan, size, analysis.time)


def _warp_mask(mask: torch.Tensor, flow: np.ndarray) -> torch.Tensor:
    """A [h,w] mask moved along `flow` (from the current frame to the mask's)."""
    moved = warp(np.ascontiguousarray(mask.float().cpu().numpy()), flow)
    return torch.from_numpy(moved).to(mask.device, mask.dtype)


def _uint8(image: torch.Tensor) -> np.ndarray:
    """float [3,h,w] in [0,1] → uint8 h×w×3 numpy."""
    return to_uint8(image).cpu().numpy()


class LiveStylizer:
    """Drives a `Pipeline` for live video; see the module docstring.

    `process` is called from one thread (the frame thread); `close` from any.
    """

    def __init__(self, pipeline: Pipeline, style_every: int = 0):
        if style_every < 0:
            raise ValueError(f"style_every must be 0 (background) or more, got {style_every}")
        self.pipeline = pipeline
        self.style_every = style_every
        self.min_style_interval = 0.0  # seconds between the starts of two stylizations
        # Segment every n-th frame; in between, the masks are moved along by optical flow.
        self.segment_every = 1
        self.frames = 0
        self.stylizations = 0
        self.frame_seconds: deque[float] = deque(maxlen=60)
        self.style_seconds: deque[float] = deque(maxlen=20)
        self._flows = FlowEstimator()
        self._key: _Key | None = None
        self._segmented: tuple[FrameAnalysis, np.ndarray] | None = None  # and its gray
        self._key_lock = threading.Lock()
        self._condition = threading.Condition()
        self._pending: tuple[FrameAnalysis, np.ndarray] | None = None
        self._error: BaseException | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        if style_every == 0:
            self._thread = threading.Thread(
                target=self._style_loop, name="partialstyle-style", daemon=True
            )
            self._thread.start()

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> np.ndarray:
        """The frame styled: stylized in line, or the newest stylization carried onto it."""
        started = time.perf_counter()
        error, self._error = self._error, None
        if error is not None:
            raise error
        pipeline = self.pipeline
        gray = flow_gray(frame)
        analysis = self._analyse(frame, timestamp, gray)
        key = self._key
        # A style change, and its fade, show at once: styled in line until the fade ends.
        in_line = key is None or not key.fits(analysis) or pipeline.morphing(analysis)
        if self.style_every > 0:
            in_line = in_line or self.frames % self.style_every == 0
        if in_line:
            layer = self._stylize(analysis, gray)
        else:
            layer = self._propagated_layer(analysis, key, gray)
            if self._thread is not None:
                with self._condition:
                    self._pending = (analysis, gray)
                    self._condition.notify()
        self.frames += 1
        out = pipeline.compose(analysis, layer)
        self.frame_seconds.append(time.perf_counter() - started)
        return out

    def reset(self) -> None:
        """Forget the stylization (between unrelated clips)."""
        with self._condition:
            self._pending = None
        self._key = None
        self.frames = 0
        self.pipeline.reset()

    def close(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10.0)

    # -- internals ---------------------------------------------------------------------------

    def _analyse(self, frame: np.ndarray, timestamp: float | None, gray: np.ndarray):
        """Segment this frame, or move the masks of the last segmented one onto it."""
        segmented = self._segmented
        if (
            self.segment_every > 1
            and self.frames % self.segment_every != 0
            and segmented is not None
            and segmented[0].region_masks is not None
            and segmented[1].shape == gray.shape
            and segmented[0].config == self.pipeline.config
            and segmented[0].plan == self.pipeline.plan
        ):
            flow = self._flows(gray, segmented[1])
            analysis = self.pipeline.analyse(
                frame, timestamp, moved_from=(segmented[0], partial(_warp_mask, flow=flow))
            )
            if analysis.small.shape == segmented[0].small.shape:
                return analysis
        analysis = self.pipeline.analyse(frame, timestamp)
        self._segmented = (analysis, gray)
        return analysis

    def _stylize(self, analysis: FrameAnalysis, gray: np.ndarray) -> torch.Tensor:
        """Run the networks on `analysis`; its stylization becomes the keyframe unless a
        newer frame's already has. The frame thread and the style thread may both be here:
        a settings change is styled in line at once, not after the nicer style thread's
        run (which, on a busy CPU, can take seconds), so no lock is held around the
        networks (the pipeline guards its own temporal state)."""
        started = time.perf_counter()
        layer = self.pipeline.style_layer(analysis)
        key = _keyframe(analysis, layer, gray)
        with self._key_lock:
            if self._key is None or self._key.time <= key.time:
                self._key = key
        self.stylizations += 1
        self.style_seconds.append(time.perf_counter() - started)
        return layer

    @torch.inference_mode()
    def _propagated_layer(
        self, analysis: FrameAnalysis, key: _Key, gray: np.ndarray
    ) -> torch.Tensor:
        small, keyframe = analysis.small, key.keyframe
        coverage = self.pipeline.coverage(analysis)
        if np.array_equal(gray, keyframe.gray) and torch.equal(coverage, key.layer[3]):
            return key.layer  # a still picture: exactly the stylized frame, nothing to move
        flow_size = (gray.shape[1], gray.shape[0])
        if analysis.person is None:
            person = np.zeros(gray.shape, np.float32)
        else:
            person = analysis.person.float().cpu().numpy()
            person = cv2.resize(person, flow_size, interpolation=cv2.INTER_AREA)
        moved, motion = propagate(keyframe, gray, person, self._flows)
        color = to_image(torch.from_numpy(moved).to(small.device)).to(small.dtype)
        layer = torch.cat([color * coverage, coverage[None]])
        if motion > REANCHOR_MOTION:
            # Far from the stylization (the style runs seldom, the picture moves a lot):
            # carry on from this frame, so flow keeps spanning short distances.
            anchored = _Key(Keyframe.build(moved, person, gray), layer, *key.settings)
            with self._key_lock:
                if self._key is key:  # not if a fresh stylization arrived meanwhile
                    self._key = anchored
        return layer

    def _style_loop(self) -> None:
        _lower_thread_priority(STYLE_THREAD_NICE)
        last_start = float("-inf")
        while True:
            with self._condition:
                while not self._stopping and self._pending is None:
                    self._condition.wait()
                if self._stopping:
                    return
                wait = last_start + self.min_style_interval - time.perf_counter()
            if wait > 0:  # paced: let the newest frame arrive meanwhile
                with self._condition:
                    self._condition.wait_for(lambda: self._stopping, timeout=wait)
                continue
            with self._condition:
                pending, self._pending = self._pending, None
            pipeline = self.pipeline
            if pending is None or (pending[0].config, pending[0].plan) != (
                pipeline.config,
                pipeline.plan,
            ):
                continue  # no frame, or settings that have changed since: styled in line
            last_start = time.perf_counter()
            try:
                with torch.inference_mode():
                    self._stylize(*pending)
            except Exception as error:  # reported by the next `process` call
                self._error = error


def _lower_thread_priority(nice: int) -> None:
    """Make the calling thread nicer (Linux: threads have their own nice value)."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
