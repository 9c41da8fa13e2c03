"""A worker thread that restyles the newest frame while OBS keeps rendering.

OBS's render thread must never wait for inference. It drops every frame into a one-slot
mailbox (a newer frame replaces an unprocessed older one) and picks up whatever result is
newest. The worker builds and starts its processor itself, so starting it (in the filter:
joining the inference process all filters share, which the first one starts, importing torch
and loading the models) also happens off the render thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from partialstyle.errors import one_line


class Processor(Protocol):
    """What the worker drives (the filter's is `partialstyle.obs.remote.RemoteProcessor`, a
    client of the inference process all filters share).

    `start` (slow: loads models) and `process` run on the worker thread; `configure` and
    `close` may be called from any thread, `close` also while `start` or `process` runs, and
    must make them return soon. A processor may also have a `report` attribute: the worker
    sets it to a callable taking a one-line notice of a failure the processor recovered from
    by itself (the remote one: its inference process died and was started again).
    """

    def start(self) -> None: ...

    def configure(self, settings: Any) -> None: ...

    def process(self, frame: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


ProcessorFactory = Callable[[Any], Processor]

# After a failure the same settings are retried this often (a model may have been prepared).
RETRY_SECONDS = 10.0
# A frame made with settings that changed meanwhile is dropped, unless the newest result is
# older than this: under a stream of changes (a controller sending SetSourceFilterSettings
# many times a second) every frame would be dropped and the filter, finding no fresh result,
# would show the source unstyled. Below the filter's STALE_SECONDS.
KEEP_SUPERSEDED_AFTER = 0.5


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
    ):
        self._factory = factory
        self._on_error = on_error
        self._condition = threading.Condition()
        self._settings = settings
        self._settings_version = 0
        self._applied_version = 0  # the settings the processor has
        self._failed_at: float | None = None  # frames wait RETRY_SECONDS after a failure
        self._processor: Processor | None = None
        self._frame: np.ndarray | None = None
        self._result: Result | None = None
        self._busy_since: float | None = None
        self._stopping = False
        # A processor that reported a recovered failure (restarting its inference process)
        # until its next result.
        self.recovering = False
        self.state = "loading"
        self.error: str | None = None
        self.durations: deque[float] = deque(maxlen=50)
        self.results = 0
        self._result_at = 0.0  # time.monotonic() of the newest result; 0 before the first
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- called from OBS threads ----------------------------------------------------------

    def configure(self, settings: Any) -> None:
        """New settings: passed on to a running processor at once, so the next frame it
        starts uses them. A frame still in progress with the old settings is dropped."""
        with self._condition:
            self._settings = settings
            self._settings_version += 1
            if self._processor is not None and self.state == "ready":
                self._processor.configure(settings)
                self._applied_version = self._settings_version
                self._failed_at = None  # new settings may work: try the next frame
            self._condition.notify()

    @property
    def busy(self) -> bool:
        """True while the processor works on a frame."""
        return self._busy_since is not None

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

    def stop(self, timeout: float = 5.0) -> None:
        """Close the processor (which ends a frame in progress) and wait for the thread."""
        with self._condition:
            self._stopping = True
            processor = self._processor
            self._condition.notify()
        if processor is not None:
            processor.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def processor(self) -> Processor | None:
        """The running processor (None while it is being built or after a failure)."""
        return self._processor

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        processor = self._build()
        if processor is None:
            return
        while True:
            with self._condition:
                while not self._stopping and self._frame is None:
                    self._condition.wait()
                if self._stopping:
                    return
                frame, self._frame = self._frame, None
                settings, version = self._settings, self._settings_version
                configure = version != self._applied_version
                self._applied_version = version
                if configure:
                    self._failed_at = None
                failed_at = self._failed_at
                self._busy_since = time.perf_counter()
            try:
                if configure:
                    processor.configure(settings)
                if failed_at is not None and time.perf_counter() - failed_at < RETRY_SECONDS:
                    continue
                started = time.perf_counter()
                image = processor.process(frame)
            except Exception as error:  # any failure: pass frames through, report once
                self._failed_at = time.perf_counter()
                self._fail(error)
            else:
                self.durations.append(time.perf_counter() - started)
                if self._settings_version != version and not self._result_overdue():
                    continue  # made with settings that have changed since: not shown
                self.results += 1
                self._result = Result(image, self.results)
                self._result_at = time.monotonic()
                self.recovering = False
                self.error = None
                self._failed_at = None
            finally:
                self._busy_since = None

    def _result_overdue(self) -> bool:
        """Whether the last result is so old that one made with superseded settings is
        better than none (see KEEP_SUPERSEDED_AFTER)."""
        return self._result_at > 0.0 and time.monotonic() - self._result_at > KEEP_SUPERSEDED_AFTER

    def _build(self) -> Processor | None:
        """Create and start the processor (slow); retry when settings change or later."""
        while True:
            with self._condition:
                if self._stopping:
                    return None
                settings, version = self._settings, self._settings_version
                self.state = "loading"
            processor = None
            try:
                processor = self._factory(settings)
                if hasattr(processor, "report"):
                    processor.report = self._notice
                with self._condition:
                    self._processor = processor
                    if self._stopping:
                        raise RuntimeError("stopping")
                processor.start()
            except Exception as error:
                with self._condition:
                    self._processor = None
                if processor is not None:
                    processor.close()
                self._fail(error)
                with self._condition:
                    self.state = "failed"
                    self._condition.wait_for(
                        lambda built=version: self._stopping or self._settings_version != built,
                        timeout=RETRY_SECONDS,
                    )
                continue
            with self._condition:
                self.state = "ready"
                self.error = None
                if self._settings_version != version:  # changed while starting
                    processor.configure(self._settings)
                self._applied_version = self._settings_version
            return processor

    def _notice(self, message: str) -> None:
        """A recovered failure: to the log, without changing state or dropping the result."""
        if not self._stopping:
            self.recovering = True
            self._on_error(message)

    def _fail(self, error: Exception) -> None:
        if self._stopping:  # closing the processor made it fail: not an error
            return
        self._result = None
        message = one_line(error)
        if message != self.error:
            self.error = message
            self._on_error(message)
