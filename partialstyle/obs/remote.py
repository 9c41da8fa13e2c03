"""The filter's processor: a client of the one inference process of this OBS process.

Inside OBS, a Python thread running torch would hold the GIL between torch's operations, and
OBS's render callback (a ctypes thunk) needs the GIL every frame; torch's thread pools would
also live inside OBS until it exits. So OBS only copies frames into shared memory and waits on
a queue (the GIL is released while it waits); a child process (`inference_server`), started
with the project environment's own Python at a lower CPU priority (`launch`), does the work.

There is one such process per OBS process (`InferenceService`), shared by every filter
instance: the models are loaded once, and the process takes the sources' frames in turn.
Each filter's `RemoteProcessor` is a client of it, with its own settings, temporal state and
shared-memory slots; its messages (`partialstyle.obs.messages`) carry its client number.

Every wait is bounded. A child that dies or stops answering is ended, and whichever client
notices starts a new one on its next frame (the others join it on theirs); the process ends
when the last client closes, within a few seconds whatever state it is in.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from partialstyle.obs import messages
from partialstyle.obs.frame_slots import FrameSlot
from partialstyle.obs.launch import QUIT_TIMEOUT, start_server, stop_process
from partialstyle.obs.messages import Message

START_TIMEOUT = 300.0  # importing torch and loading models on a slow, busy machine
FRAME_TIMEOUT = 60.0


def _failure(reply: Message, otherwise: str) -> str:
    """What went wrong, as the process said it (an `Error`), else `otherwise`."""
    return reply.message if isinstance(reply, messages.Error) else otherwise


class ChildExited(RuntimeError):
    """The inference process ended (crashed or was killed)."""


@dataclass(eq=False)
class Child:
    """One inference process and the clients attached to it (their answer queues)."""

    process: subprocess.Popen
    inboxes: dict[int, queue.Queue] = field(default_factory=dict)
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    ended: bool = False  # its stdout has closed: it is gone or going

    @property
    def pid(self) -> int:
        return self.process.pid


class InferenceService:
    """The inference process every filter instance of this OBS process shares.

    The first client to attach starts it; a client that finds it dead or hung discards it, and
    the next attach starts a new one; the last client to detach ends it. Thread-safe.
    """

    def __init__(self, python: Path, nice: int = 10):
        self.python, self.nice = python, nice
        self._lock = threading.Lock()
        self._child: Child | None = None

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None else None

    def attach(self, client: int, first: list[Message]) -> tuple[Child, queue.Queue]:
        """Register `client` with the running process (started if there is none) and send
        `first` (its settings and pace); its answers arrive in the queue returned, and None
        there means the process ended."""
        with self._lock:
            child = self._child
            if child is None or child.ended or child.process.poll() is not None:
                child = self._child = self._start()
            inbox: queue.Queue = queue.Queue()
            child.inboxes[client] = inbox
            for message in first:
                self._write(child, message)
        return child, inbox

    def send(self, child: Child, message: Message) -> None:
        """Write one message; a dead child is noticed by its clients' queues, not here."""
        with self._lock:
            self._write(child, message)

    def detach(self, client: int, child: Child) -> None:
        """`client` is done with `child`; the last client's leaving ends the process."""
        with self._lock:
            child.inboxes.pop(client, None)
            self._write(child, messages.Bye(client))
            last = child is self._child and not child.inboxes
            if last:
                self._child = None
                self._write(child, messages.Quit())
        if last:
            stop_process(child.process)

    def discard(self, child: Child) -> None:
        """A client found `child` dead or not answering: end it; the next attach starts anew."""
        with self._lock:
            if self._child is child:
                self._child = None
        stop_process(child.process, 0.5)

    # -- internals -----------------------------------------------------------------------------

    def _start(self) -> Child:
        process = start_server(
            self.python, ["--parent", str(os.getpid()), "--nice", str(self.nice)]
        )
        child = Child(process)
        readers = (
            (messages.read_messages, (process.stdout, partial(self._deliver, child))),
            (self._read_errors, (process.stderr, child)),
        )
        for target, args in readers:
            threading.Thread(
                target=target, args=args, name=f"partialstyle-child-{process.pid}", daemon=True
            ).start()
        return child

    @staticmethod
    def _write(child: Child, message: Message) -> None:
        with contextlib.suppress(OSError, ValueError):
            child.process.stdin.write(messages.encode(message))
            child.process.stdin.flush()

    def _deliver(self, child: Child, message: Message | None) -> None:
        """An answer to its client's queue; the end of the stream to every client's."""
        if message is None:
            with self._lock:  # no client can attach between marking it ended and waking all
                child.ended = True
                inboxes = list(child.inboxes.values())
            for inbox in inboxes:
                inbox.put(None)
            return
        inbox = child.inboxes.get(getattr(message, "client", None))
        if inbox is not None:
            inbox.put(message)

    @staticmethod
    def _read_errors(stream: Any, child: Child) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in stream:
                text = line.decode("utf-8", "replace").strip()
                if text:
                    child.stderr.append(text)


_services: dict[tuple[str, int], InferenceService] = {}
_services_lock = threading.Lock()


def shared_service(python: Path, nice: int = 10) -> InferenceService:
    """The one service of this process for this interpreter and priority."""
    key = (str(python), nice)
    with _services_lock:
        service = _services.get(key)
        if service is None:
            service = _services[key] = InferenceService(python, nice)
        return service


_client_numbers = itertools.count(1)


class RemoteProcessor:
    """One filter instance's frames through the shared inference process; see the module
    docstring.

    `configure` and `pace` may be called from any thread; `start`, `process` from one worker
    thread; `close` from any thread, also while the worker waits in `start` or `process`.
    """

    def __init__(
        self,
        python: Path,
        settings: dict[str, Any],
        nice: int = 10,
        service: InferenceService | None = None,
    ):
        self.service = service or shared_service(python, nice)
        self.client = next(_client_numbers)
        self.seconds = 0.0  # the child's own time for the last frame
        self.recent_seconds: deque[float] = deque(maxlen=50)  # and for the frames before
        self.stylizations = 0  # how often the child has run the style networks so far
        self.waits = 0  # frames that waited for a style run (past the bound), so far
        self.in_line = 0  # style runs on the child's frame thread (past the bound), so far
        self.keyframe_age: float | None = None  # of the newest result, in OBS's frames
        # Told about a recovered failure (the process restarted), for the log.
        self.report: Callable[[str], None] = lambda message: None
        self._values = dict(settings)
        self._pace = (0.0, 0.0)
        self._lock = threading.Lock()
        self._child: Child | None = None
        self._inbox: queue.Queue = queue.Queue()
        self._slots: tuple[FrameSlot, FrameSlot] | None = None
        self._closed = False
        self._frames = 0  # frame ids: answers to an abandoned frame are recognised and skipped

    # -- any thread ---------------------------------------------------------------------------

    def configure(self, settings: dict[str, Any]) -> None:
        """Send the new settings now; the child applies them before this client's next frame."""
        with self._lock:
            self._values = dict(settings)
            if self._child is not None:
                self.service.send(self._child, messages.Settings(self.client, self._values))

    def pace(self, pause: float, frame_interval: float) -> None:
        """The shortest pause between two style runs in the child (see obs.pacing), and
        OBS's frame interval (the child's budget for one frame)."""
        with self._lock:
            if (pause, frame_interval) != self._pace:
                self._pace = (pause, frame_interval)
                if self._child is not None:
                    message = messages.Pace(self.client, pause, frame_interval)
                    self.service.send(self._child, message)

    def close(self) -> None:
        """Leave the service (the last client ends it) and remove the shared memory."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
            self._inbox.put(None)  # wakes `start` or `process` waiting for an answer
        if child is not None:
            self.service.detach(self.client, child)
        # Only unlinked: the worker may still be inside `process`, writing to the mapping,
        # which is unmapped when the last reference goes.
        slots, self._slots = self._slots, None
        for slot in slots or ():
            slot.unlink()

    @property
    def pid(self) -> int | None:
        """The inference process this client uses (shared with the other filters)."""
        child = self._child
        return child.pid if child is not None else None

    # -- the worker thread -----------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Join the service (starting it if needed) and wait until the models for the
        settings are loaded."""
        with self._lock:
            if self._closed:
                raise RuntimeError("closed")
            first = [
                messages.Settings(self.client, self._values),
                messages.Pace(self.client, *self._pace),
            ]
            child, inbox = self.service.attach(self.client, first)
            self._child, self._inbox = child, inbox
        reply = self._receive(inbox, timeout, child)
        if not isinstance(reply, messages.Ready):
            self._leave(child)
            raise RuntimeError(_failure(reply, "the inference process did not start"))

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Restyle one H×W×4 frame in the child; raises RuntimeError with its one-line error.

        A child found dead is started again; one that dies during the frame gets one retry.
        """
        for attempt in (1, 2):
            if self._child is None:
                self.start()
            try:
                return self._process_once(frame)
            except ChildExited as error:
                if attempt == 2 or self._closed:
                    raise
                self.report(f"{error}; restarting it")
        raise AssertionError("unreachable")

    def _process_once(self, frame: np.ndarray) -> np.ndarray:
        child, inbox = self._child, self._inbox
        if child is None:
            raise RuntimeError("closed")
        height, width = frame.shape[:2]
        slots = self._slots
        if slots is None or (slots[0].width, slots[0].height) != (width, height):
            self._drop_slots()
            slots = self._slots = (
                FrameSlot.create(width, height, "in"),
                FrameSlot.create(width, height, "out"),
            )
        source, target = slots
        source.array[...] = frame
        self._frames += 1
        message = messages.Frame(
            self.client, self._frames, str(source.path), str(target.path), width, height
        )
        self.service.send(child, message)
        reply = self._receive(inbox, FRAME_TIMEOUT, child)
        while getattr(reply, "id", None) != self._frames:
            reply = self._receive(inbox, FRAME_TIMEOUT, child)
        if not isinstance(reply, messages.Result):
            raise RuntimeError(_failure(reply, f"unexpected answer {reply.op!r}"))
        self.seconds = float(reply.seconds)
        self.recent_seconds.append(self.seconds)
        self.stylizations = int(reply.stylizations)
        self.waits, self.in_line = int(reply.waits), int(reply.in_line)
        interval = self._pace[1]
        age = float(reply.keyframe_age)
        self.keyframe_age = age / interval if interval > 0 else age * 30.0  # 30 fps till paced
        return target.array.copy()

    # -- internals -----------------------------------------------------------------------------

    def _receive(self, inbox: queue.Queue, timeout: float, child: Child) -> Message:
        try:
            message = inbox.get(timeout=timeout)
        except queue.Empty:
            self._forget(child)
            self.service.discard(child)  # hung: every client starts over with a new one
            raise RuntimeError(
                f"the inference process did not answer in {timeout:.0f} s; restarting it"
            ) from None
        if message is None:
            if self._closed:
                raise RuntimeError("closed")
            code = None
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = child.process.wait(QUIT_TIMEOUT)
            last = child.stderr[-1] if child.stderr else "no error output"
            self._forget(child)
            self.service.discard(child)
            raise ChildExited(f"the inference process exited (code {code}): {last}")
        return message

    def _forget(self, child: Child) -> None:
        with self._lock:
            if self._child is child:
                self._child = None

    def _leave(self, child: Child) -> None:
        self._forget(child)
        self.service.detach(self.client, child)

    def _drop_slots(self) -> None:
        slots, self._slots = self._slots, None
        for slot in slots or ():
            slot.close()
            slot.unlink()
