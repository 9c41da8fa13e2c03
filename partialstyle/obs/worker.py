"""A worker thread that restyles the newest frame while OBS keeps rendering.

OBS's render thread must never wait for inference. It drops frames into a one-slot mailbox
(a newer frame replaces an unprocessed older one) and picks up whatever result is newest. The
worker builds its processor itself, so the slow torch import and model loading also happen
off the render thread.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Processor(Protocol):
    """What the worker drives (see `partialstyle.obs.processor`)."""

    def configure(self, settings: Any) -> None: ...

    def process(self, frame: np.ndarray) -> np.ndarray: ...


ProcessorFactory = Callable[[Any], Processor]

# After a failure the same settings are retried this often (a model may have been prepared).
RETRY_SECONDS = 10.0


@dataclass(frozen=True)
class Result:
    """A restyled frame; `number` increases with every result so readers can spot new ones."""

    image: np.ndarray
    number: int


class FrameWorker:
    """Owns one processor and one thread; every method is safe to call from any thread."""

    def __init__(
        self,
        factory: ProcessorFactory,
        settings: Any,
        on_error: Callable[[str], None] = lambda message: None,
        name: str = "partialstyle-worker",
        nice: int = 0,
    ):
        self._factory = factory
        self._nice = nice
        self._on_error = on_error
        self._condition = threading.Condition()
        self._settings = settings
        self._settings_version = 0
        self._frame: np.ndarray | None = None
        self._result: Result | None = None
        self._busy_since: float | None = None
        self._stopping = False
        self.state = "loading"
        self.error: str | None = None
        self.durations: deque[float] = deque(maxlen=50)
        self.results = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- called from OBS threads ----------------------------------------------------------

    def configure(self, settings: Any) -> None:
        """New settings; the next processed frame uses them (they are checked there too)."""
        with self._condition:
            self._settings = settings
            self._settings_version += 1
            self._condition.notify()

    def wants_frame(self, lead_time: float) -> bool:
        """True when a frame handed over now would be picked up within about `lead_time` s.

        Reading a frame back costs the render thread time, so it only does so when the
        worker is about to need one.
        """
        if self.state != "ready" or self._frame is not None:
            return False
        busy_since = self._busy_since
        if busy_since is None:
            return True
        expected = sum(self.durations) / len(self.durations) if self.durations else 0.0
        return time.perf_counter() >= busy_since + expected - lead_time

    def submit(self, frame: np.ndarray) -> None:
        """Hand over a frame the caller no longer touches; it replaces any waiting frame."""
        with self._condition:
            self._frame = frame
            self._condition.notify()

    def latest(self) -> Result | None:
        """The newest result, or None before the first one and after a failure."""
        return self._result

    def drop_result(self) -> None:
        self._result = None

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish and wait for it (the current frame completes first)."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        self._lower_priority()
        built = self._build()
        if built is None:
            return
        processor, applied = built
        failed_at: float | None = None
        while True:
            with self._condition:
                while not self._stopping and self._frame is None:
                    self._condition.wait()
                if self._stopping:
                    return
                frame, self._frame = self._frame, None
                settings, version = self._settings, self._settings_version
                self._busy_since = time.perf_counter()
            try:
                if version != applied:
                    applied, failed_at = version, None
                    processor.configure(settings)
                if failed_at is not None and time.perf_counter() - failed_at < RETRY_SECONDS:
                    continue
                started = time.perf_counter()
                image = processor.process(frame)
            except Exception as error:  # any failure: pass frames through, report once
                failed_at = time.perf_counter()
                self._fail(error)
            else:
                self.durations.append(time.perf_counter() - started)
                self.results += 1
                self._result = Result(image, self.results)
                self.error = None
                failed_at = None
            finally:
                self._busy_since = None

    def _lower_priority(self) -> None:
        """Let the OS prefer OBS's render and encoder threads over inference (Linux: the
        nice value is per thread, and torch's worker threads inherit it)."""
        if self._nice and sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)

    def _build(self) -> tuple[Processor, int] | None:
        """Create the processor (imports torch, loads models); retry when settings change."""
        while True:
            with self._condition:
                settings, version = self._settings, self._settings_version
            try:
                processor = self._factory(settings)
            except Exception as error:
                self._fail(error)
                self.state = "failed"
                with self._condition:
                    self._condition.wait_for(
                        lambda built=version: self._stopping or self._settings_version != built,
                        timeout=RETRY_SECONDS,
                    )
                    if self._stopping:
                        return None
                continue
            self.state = "ready"
            self.error = None
            return processor, version

    def _fail(self, error: Exception) -> None:
        self._result = None
        message = str(error) or type(error).__name__
        if message != self.error:
            self.error = message
            self._on_error(message)
