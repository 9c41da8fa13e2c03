"""The inference process: the core Pipeline for every OBS filter instance, outside OBS.

OBS starts one per OBS process, with the project environment's own Python
(`partialstyle.obs.launch`):

    python -m partialstyle.obs.inference_server --parent <OBS pid> --nice 10

so torch, its thread pools and the models never live inside OBS, and the models are loaded
once however many filters there are (`partialstyle.weights.model_cache` is per process). Every
filter instance is a client with its own settings, its own `Pipeline` and `LiveStylizer`
(temporal state), and its own pair of `FrameSlot` files; the messages are in
`partialstyle.obs.messages`. fd 1 is pointed at stderr right away, so a stray print cannot
corrupt the message stream.

Frames are taken round-robin over the clients that have one waiting (a client's newer frame
replaces its older one), so a busy source cannot starve the others; different clients' work
(their frames, and building their settings) may run side by side (FRAME_THREADS). A client's
failure (bad settings, a frame that raises) is answered to that client only.

Every frame comes out styled: the style networks run beside the frames in a thread of their
own per client, and each frame gets the newest stylization carried onto it
(`partialstyle.live`).

It exits on "quit", on stdin's end (OBS closed the pipe or died) and when its parent process
is gone (checked every second).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from partialstyle.errors import one_line
from partialstyle.obs import messages
from partialstyle.obs.messages import Message

PARENT_CHECK_SECONDS = 1.0
# Frames of different clients run side by side on this many threads (numpy, OpenCV and torch
# release the GIL); a client's own frames are always one at a time, in order.
FRAME_THREADS = max(1, min(2, os.cpu_count() or 1))
MODELS = ("multistyle26", "selfie", "selfie-landscape")

Send = Callable[[Message], None]


def lower_priority(nice: int) -> None:
    """Let OBS's render, encoder and llvmpipe threads have the CPU first (torch's threads,
    started later, inherit the nice value)."""
    if nice <= 0:
        return
    with contextlib.suppress(OSError, AttributeError):
        os.nice(nice)


def parent_alive(parent: int) -> bool:
    if parent <= 0 or sys.platform == "win32":
        return True  # Windows: stdin's end is the signal
    return os.getppid() == parent


class ClientSession:
    """One filter instance: its pipeline, live stylizer, pace and mapped slots."""

    def __init__(self, client: int, send: Send):
        self.client = client
        self.send = send
        self.pipeline: Any = None
        self.live: Any = None
        self.style_pause = 0.0
        self.frame_interval = 0.0
        self.build_error: str | None = None
        self.slots: dict[str, Any] = {}
        self.lock = threading.Lock()  # its settings, frames and closing one at a time
        self.closed = False

    def apply(self, values: dict[str, Any]) -> None:
        """New settings: build the pipeline the first time, reconfigure it afterwards."""
        from partialstyle.obs.settings import to_pipeline

        try:
            config, plan = to_pipeline(values)
            if self.pipeline is None:
                from partialstyle.live import LiveStylizer
                from partialstyle.pipeline import Pipeline

                pipeline = Pipeline(config, plan)
                pipeline.load()
                self.pipeline = pipeline
                self.live = LiveStylizer(pipeline)
                self.live.min_style_interval = self.style_pause
                self.live.frame_interval = self.frame_interval
                self.send(messages.Ready(self.client))
            else:
                self.pipeline.configure(config, plan)
                self.pipeline.load()  # a new segmenter or style model loads now, not mid-frame
            self.build_error = None
        except Exception as error:
            self.build_error = one_line(error)
            if self.pipeline is None:
                self.send(messages.Error(self.client, self.build_error))

    def pace(self, pause: float, frame_interval: float) -> None:
        self.style_pause = max(0.0, float(pause))
        self.frame_interval = max(0.0, float(frame_interval))
        if self.live is not None:
            self.live.min_style_interval = self.style_pause
            self.live.frame_interval = self.frame_interval

    def slot(self, role: str, path: str, width: int, height: int):
        from partialstyle.obs.frame_slots import FrameSlot

        current = self.slots.get(role)
        if current is None or str(current.path) != path:
            if current is not None:
                current.close()
            current = self.slots[role] = FrameSlot(Path(path), width, height, create=False)
        return current

    def frame(self, message: messages.Frame) -> None:
        number = message.id
        if self.closed:
            return  # the client has left: nobody waits for the answer
        if self.pipeline is None or self.build_error is not None:
            error = self.build_error or "no settings yet"
            self.send(messages.Error(self.client, error, number))
            return
        try:
            width, height = int(message.width), int(message.height)
            source = self.slot("input", message.input, width, height)
            target = self.slot("output", message.output, width, height)
            started = time.perf_counter()
            target.array[...] = self.live.process(source.array)
            seconds = time.perf_counter() - started
        except Exception as error:
            self.send(messages.Error(self.client, one_line(error), number))
            return
        live = self.live
        self.send(
            messages.Result(
                self.client,
                number,
                seconds,
                live.stylizations,
                live.report.keyframe_age,
                live.waits,
                live.in_line,
            )
        )

    def close(self) -> None:
        self.closed = True
        if self.live is not None:
            self.live.close()
        for slot in self.slots.values():
            slot.close()
            slot.unlink()  # OBS removes them too; whoever is last wins
        self.slots.clear()


@dataclass(frozen=True)
class Turn:
    """A client's work for one turn: its newest settings (if new), then its newest frame."""

    session: ClientSession
    values: dict[str, Any] | None
    frame: messages.Frame | None


class Service:
    """Every client's session, the work waiting for its turn, and the threads that do it
    (up to FRAME_THREADS clients at once, each client's work one at a time and in order).

    Settings are built on those threads too, so loading a model for one client (seconds for
    YOLACT) holds up that client only, not the others' frames.
    """

    def __init__(self, send: Send, frame_threads: int = 0):
        self.send = send
        self.sessions: dict[int, ClientSession] = {}
        self.settings: dict[int, dict[str, Any]] = {}  # the newest unapplied, per client
        self.waiting: dict[int, messages.Frame] = {}  # the newest frame, per client
        self.turns: deque[int] = deque()  # round-robin order of the clients
        self.busy: set[int] = set()  # clients a thread is working for
        self._condition = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work_loop, name=f"frames-{index}", daemon=True)
            for index in range(frame_threads)
        ]
        for thread in self._threads:
            thread.start()

    def handle(self, batch: list[Message]) -> None:
        """Messages that arrived together (a client's newer settings or frame replaces an
        older one still waiting)."""
        for message in batch:
            client = getattr(message, "client", None)
            if not isinstance(client, int):
                continue
            with self._condition:
                if isinstance(message, messages.Settings):
                    if client not in self.sessions:
                        self.sessions[client] = ClientSession(client, self.send)
                        self.turns.append(client)
                    self.settings[client] = dict(message.values or {})
                elif client not in self.sessions:
                    if isinstance(message, messages.Frame):  # a client that left (or never came)
                        self.send(messages.Error(client, "unknown client", message.id))
                elif isinstance(message, messages.Pace):
                    self.sessions[client].pace(message.style_pause, message.frame_interval)
                elif isinstance(message, messages.Frame):
                    self.waiting[client] = message
                self._condition.notify()
            if isinstance(message, messages.Bye):
                self.drop(client)

    def drop(self, client: int) -> None:
        with self._condition:
            self.waiting.pop(client, None)
            self.settings.pop(client, None)
            session = self.sessions.pop(client, None)
            with contextlib.suppress(ValueError):
                self.turns.remove(client)
        if session is not None:
            with session.lock:  # after the work in progress for it, if any
                session.close()

    def next_turn(self) -> Turn | None:
        """The work of the next client in turn that has some and is not busy (None: no
        work waits). The caller holds the condition when there are threads."""
        for _ in range(len(self.turns)):
            client = self.turns[0]
            self.turns.rotate(-1)
            if client in self.busy or (client not in self.settings and client not in self.waiting):
                continue
            values, frame = self.settings.pop(client, None), self.waiting.pop(client, None)
            return Turn(self.sessions[client], values, frame)
        return None

    def run(self, turn: Turn) -> None:
        with turn.session.lock:
            if turn.values is not None:
                turn.session.apply(turn.values)
            if turn.frame is not None:
                turn.session.frame(turn.frame)

    def close(self) -> None:
        """Finish the work in progress, then close every session."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(30.0)
        for client in list(self.sessions):
            self.drop(client)

    def _work_loop(self) -> None:
        while True:
            with self._condition:
                turn = self.next_turn()
                while turn is None and not self._stopping:
                    self._condition.wait()
                    turn = self.next_turn()
                if self._stopping:
                    return
                self.busy.add(turn.session.client)
            try:
                self.run(turn)
            finally:
                with self._condition:
                    self.busy.discard(turn.session.client)
                    self._condition.notify_all()


def take_messages(inbox: queue.Queue) -> list[Message | None]:
    """What has arrived, waiting up to a second for the first message."""
    batch: list[Message | None] = []
    with contextlib.suppress(queue.Empty):
        batch.append(inbox.get(timeout=PARENT_CHECK_SECONDS))
        while batch[-1] is not None:
            batch.append(inbox.get_nowait())
    return batch


def serve(parent: int, messages_out: IO[bytes]) -> None:
    inbox: queue.Queue = queue.Queue()
    threading.Thread(
        target=messages.read_messages,
        args=(sys.stdin.buffer, inbox.put),
        name="stdin",
        daemon=True,
    ).start()
    lock = threading.Lock()

    def send(message: Message) -> None:
        with lock:
            messages_out.write(messages.encode(message))
            messages_out.flush()

    service = Service(send, FRAME_THREADS)
    try:
        while True:
            batch = take_messages(inbox)
            if not batch and not parent_alive(parent):
                return
            if any(message is None or isinstance(message, messages.Quit) for message in batch):
                return
            service.handle(batch)  # type: ignore[arg-type]
    finally:
        service.close()


def check(python_version: str) -> messages.Environment:
    """What the script's status shows: torch device, models ready, Python version."""
    from partialstyle import weights
    from partialstyle.device import resolve_device

    models = {name: weights.model_status(name) for name in MODELS}
    return messages.Environment(
        python=python_version,
        device=resolve_device("auto").type,
        missing=tuple(name for name, state in models.items() if state != "ready"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    parser.add_argument("--nice", type=int, default=10, help="lower the CPU priority by this")
    parser.add_argument("--check", action="store_true", help="print the environment, then exit")
    args = parser.parse_args(argv)

    messages_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if args.check:
        try:
            found = check(version)
        except Exception as error:
            found = messages.Environment(python=version, error=one_line(error))
        messages_out.write(messages.encode(found))
        messages_out.flush()
        return 0
    # OBS shuts this process down itself; a Ctrl+C meant for OBS's terminal must not.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lower_priority(args.nice)
    serve(args.parent, messages_out)
    # The stdin reader thread may be blocked inside sys.stdin's buffer; a normal interpreter
    # exit would then abort ("could not acquire lock ... at interpreter shutdown") and dump
    # core. Everything worth keeping is already flushed and the slots are closed.
    with contextlib.suppress(OSError, ValueError):
        messages_out.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
