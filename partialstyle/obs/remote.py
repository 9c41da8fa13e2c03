"""The filter's processor: the core Pipeline in a child process (`inference_server`).

Inside OBS, a Python thread running torch would hold the GIL between torch's operations, and
OBS's render callback (a ctypes thunk) needs the GIL every frame; torch's thread pools would
also live inside OBS until it exits. So OBS only copies frames into shared memory and waits on
a pipe (the GIL is released while it waits); the child, started with the project
environment's own Python at a lower CPU priority, does the work.

Every wait is bounded. A child that dies or stops answering is killed and started again on
the next frame; `close` ends it within a few seconds whatever state it is in.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import weakref
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from partialstyle.obs.frame_slots import FrameSlot

SERVER_MODULE = "partialstyle.obs.inference_server"
START_TIMEOUT = 300.0  # importing torch and loading models on a slow, busy machine
FRAME_TIMEOUT = 60.0
QUIT_TIMEOUT = 3.0
# Windows has no nice values; this creation flag is its equivalent of nice 10.
BELOW_NORMAL_PRIORITY_CLASS = 0x00004000


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtual environment (bin/python or Scripts/python.exe)."""
    for candidate in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{venv} has no bin/python or Scripts/python.exe")


def child_environment() -> dict[str, str]:
    """OBS's environment minus what would point the child at OBS's own Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# Every child still running, so that Python's exit (OBS quitting) can end them.
_children: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()


def start_server(python: Path, arguments: list[str]) -> subprocess.Popen:
    flags = BELOW_NORMAL_PRIORITY_CLASS if sys.platform == "win32" else 0
    process = subprocess.Popen(
        [str(python), "-m", SERVER_MODULE, *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_environment(),
        creationflags=flags,
    )
    _children.add(process)
    return process


def stop_process(process: subprocess.Popen, grace: float = QUIT_TIMEOUT) -> None:
    """Close its stdin (the child's cue to quit), then terminate, then kill; always reaped."""
    for stream in (process.stdin,):
        with contextlib.suppress(OSError, ValueError):
            stream.close()
    for action in (None, process.terminate, process.kill):
        if action is not None:
            with contextlib.suppress(OSError):
                action()
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()  # after SIGKILL this returns at once


@atexit.register
def _stop_children() -> None:
    for process in list(_children):
        if process.poll() is None:
            stop_process(process, 1.0)


def check_environment(python: Path, timeout: float = 180.0) -> dict[str, Any]:
    """Run the server's --check in `python`: device, missing models, Python version."""
    process = start_server(python, ["--check"])
    try:
        output, errors = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(process, 0.5)
        return {"error": f"no answer from {python} in {timeout:.0f} s"}
    for line in output.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError):
            return json.loads(line)
    tail = errors.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    return {"error": f"{python} failed: {tail[0]}"}


class ChildExited(RuntimeError):
    """The inference process ended (crashed or was killed)."""


class RemoteProcessor:
    """Runs frames through an inference_server child; see the module docstring.

    `configure` may be called from any thread; `start`, `process` from one worker thread;
    `close` from any thread, also while the worker waits in `start` or `process`.
    """

    def __init__(self, python: Path, settings: dict[str, Any], nice: int = 10):
        self.python, self.nice = python, nice
        self.seconds = 0.0  # the child's own time for the last frame
        self.stylizations = 0  # how often the child has run the style networks so far
        self._values = dict(settings)
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._inbox: queue.Queue = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=20)
        self._slots: tuple[FrameSlot, FrameSlot] | None = None
        self._closed = False
        self._frames = 0  # frame ids: answers to an abandoned frame are recognised and skipped
        self._pace = (0.0, 0.0)

    # -- any thread ---------------------------------------------------------------------------

    def configure(self, settings: dict[str, Any]) -> None:
        """Send the new settings now; the child applies them before its next frame."""
        with self._lock:
            self._values = dict(settings)
            self._send({"op": "settings", "values": self._values})

    def pace(self, pause: float, frame_interval: float) -> None:
        """The shortest pause between two style runs in the child (see obs.pacing), and
        OBS's frame interval (the child's budget for one frame)."""
        with self._lock:
            if (pause, frame_interval) != self._pace:
                self._pace = (pause, frame_interval)
                self._send({"op": "pace", "style_pause": pause, "frame_interval": frame_interval})

    def close(self) -> None:
        """End the child and remove the shared memory (bounded: a few seconds at most)."""
        with self._lock:
            self._closed = True
            process, self._process = self._process, None
            if process is not None:
                self._send_to(process, {"op": "quit"})
        if process is not None:
            stop_process(process)
        # Only unlinked: the worker may still be inside `process`, writing to the mapping,
        # which is unmapped when the last reference goes.
        slots, self._slots = self._slots, None
        for slot in slots or ():
            slot.unlink()

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    # -- the worker thread -----------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the child and wait until it has loaded the models for the settings."""
        with self._lock:
            if self._closed:
                raise RuntimeError("closed")
            self._inbox = inbox = queue.Queue()
            process = self._process = start_server(
                self.python, ["--parent", str(os.getpid()), "--nice", str(self.nice)]
            )
            self._send({"op": "settings", "values": self._values})
            pause, frame_interval = self._pace
            self._send({"op": "pace", "style_pause": pause, "frame_interval": frame_interval})
        for stream, target in ((process.stdout, self._read_messages), (process.stderr, None)):
            threading.Thread(
                target=target or self._read_errors,
                args=(stream, inbox),
                name=f"partialstyle-child-{process.pid}",
                daemon=True,
            ).start()
        reply = self._receive(inbox, timeout)
        if reply["op"] != "ready":
            self._kill()
            raise RuntimeError(reply.get("message", "the inference process did not start"))

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Restyle one H×W×4 frame in the child; raises RuntimeError with its one-line error.

        A child found dead is started again; one that dies during the frame gets one retry.
        """
        for attempt in (1, 2):
            if self._process is None or self._process.poll() is not None:
                self.start()
            try:
                return self._process_once(frame)
            except ChildExited:
                if attempt == 2 or self._closed:
                    raise
        raise AssertionError("unreachable")

    def _process_once(self, frame: np.ndarray) -> np.ndarray:
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
        with self._lock:
            self._send(
                {
                    "op": "frame",
                    "id": self._frames,
                    "input": str(source.path),
                    "output": str(target.path),
                    "width": width,
                    "height": height,
                }
            )
        reply = self._receive(self._inbox, FRAME_TIMEOUT)
        while reply.get("id") != self._frames:
            reply = self._receive(self._inbox, FRAME_TIMEOUT)
        if reply["op"] != "result":
            raise RuntimeError(reply.get("message", f"unexpected answer {reply['op']!r}"))
        self.seconds = float(reply.get("seconds", 0.0))
        self.stylizations = int(reply.get("stylizations", self.stylizations))
        return target.array.copy()

    # -- internals -----------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        """Write one message (caller holds the lock); a dead child is noticed by `_receive`."""
        if self._process is not None:
            self._send_to(self._process, message)

    @staticmethod
    def _send_to(process: subprocess.Popen, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):
            process.stdin.write((json.dumps(message) + "\n").encode())
            process.stdin.flush()

    def _receive(self, inbox: queue.Queue, timeout: float) -> dict[str, Any]:
        try:
            message = inbox.get(timeout=timeout)
        except queue.Empty:
            self._kill()
            raise RuntimeError(
                f"the inference process did not answer in {timeout:.0f} s; restarting it"
            ) from None
        if message is None:
            if self._closed:
                raise RuntimeError("closed")
            code = None
            with contextlib.suppress(AttributeError, subprocess.TimeoutExpired):
                code = self._process.wait(QUIT_TIMEOUT)
            last = self._stderr[-1] if self._stderr else "no error output"
            self._kill()
            raise ChildExited(f"the inference process exited (code {code}): {last}")
        return message

    def _kill(self) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            stop_process(process, 0.5)

    def _drop_slots(self) -> None:
        slots, self._slots = self._slots, None
        for slot in slots or ():
            slot.close()
            slot.unlink()

    @staticmethod
    def _read_messages(stream: Any, inbox: queue.Queue) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in stream:
                with contextlib.suppress(ValueError):
                    inbox.put(json.loads(line))
        inbox.put(None)

    def _read_errors(self, stream: Any, inbox: queue.Queue) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in stream:
                text = line.decode("utf-8", "replace").strip()
                if text:
                    self._stderr.append(text)
