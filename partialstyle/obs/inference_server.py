"""The inference process: the core Pipeline for one OBS filter instance, outside OBS.

OBS starts it with the project environment's own Python (`partialstyle.obs.remote`):

    python -m partialstyle.obs.inference_server --parent <OBS pid> --nice 10

so torch, its thread pools and the models never live inside OBS. Messages are JSON lines:
OBS writes to stdin, this process answers on stdout (fd 1 is pointed at stderr right away, so
a stray print cannot corrupt the stream). Frames travel through `FrameSlot` files.

    → {"op": "settings", "values": {...}}     the filter's settings (applied before the next frame)
    → {"op": "pace", "style_pause": s, "frame_interval": t}    the shortest pause between two
      style runs, and OBS's frame interval (when a frame takes more than half of it, masks
      are segmented on every other frame only and moved along by optical flow in between)
    → {"op": "frame", "id": n, "input": path, "output": path, "width": w, "height": h}
    → {"op": "quit"}
    ← {"op": "ready"} or {"op": "error", "message": "one line"}    to the first settings
    ← {"op": "result", "id": n, "seconds": s, "stylizations": k}   the output slot holds
      the styled frame; k counts the style network runs so far

Every frame comes out styled: the style networks run beside the frames in a thread of their
own, and each frame gets the newest stylization carried onto it (`partialstyle.live`).
    ← {"op": "error", "id": n, "message": "one line"}    this frame failed (also: bad settings)

It exits on "quit", on stdin's end (OBS closed the pipe or died) and when its parent process
is gone (checked every second).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

PARENT_CHECK_SECONDS = 1.0
MAX_SEGMENT_EVERY = 3
MODELS = ("multistyle26", "selfie", "selfie-landscape")


def one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


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


def read_messages(stream: IO[bytes], inbox: queue.Queue) -> None:
    """Stdin → inbox; None marks the end (OBS closed the pipe or exited)."""
    try:
        for line in stream:
            line = line.strip()
            if line:
                inbox.put(json.loads(line))
    except (OSError, ValueError):
        pass
    inbox.put(None)


class Server:
    """Holds the pipeline and the mapped slots; handles one message at a time."""

    def __init__(self, send):
        self.send = send
        self.pipeline: Any = None
        self.live: Any = None
        self.style_pause = 0.0
        self.frame_interval = 0.0
        self.values: dict[str, Any] | None = None
        self.build_error: str | None = None
        self.slots: dict[str, Any] = {}

    def apply(self, values: dict[str, Any]) -> None:
        """New settings: build the pipeline the first time, reconfigure it afterwards."""
        from partialstyle.obs.settings import to_pipeline

        self.values = values
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
                self.send({"op": "ready"})
            else:
                self.pipeline.configure(config, plan)
                self.pipeline.load()  # a new segmenter or style model loads now, not mid-frame
            self.build_error = None
        except Exception as error:
            self.build_error = one_line(error)
            if self.pipeline is None:
                self.send({"op": "error", "message": self.build_error})

    def pace(self, pause: float, frame_interval: float) -> None:
        self.style_pause = max(0.0, float(pause))
        self.frame_interval = max(0.0, float(frame_interval))
        if self.live is not None:
            self.live.min_style_interval = self.style_pause

    def adapt_segmentation(self) -> None:
        """Segment every frame while frames take at most half of OBS's frame interval."""
        live, budget = self.live, 0.5 * self.frame_interval
        if budget <= 0.0 or len(live.frame_seconds) < live.frame_seconds.maxlen:
            return
        cost = sum(live.frame_seconds) / len(live.frame_seconds)
        if cost > budget and live.segment_every < MAX_SEGMENT_EVERY:
            live.segment_every += 1
            live.frame_seconds.clear()
        elif cost < 0.6 * budget and live.segment_every > 1:
            live.segment_every -= 1
            live.frame_seconds.clear()

    def slot(self, role: str, path: str, width: int, height: int):
        from partialstyle.obs.frame_slots import FrameSlot

        current = self.slots.get(role)
        if current is None or str(current.path) != path:
            if current is not None:
                current.close()
            current = self.slots[role] = FrameSlot(Path(path), width, height, create=False)
        return current

    def frame(self, message: dict[str, Any]) -> None:
        number = message.get("id")
        if self.pipeline is None or self.build_error is not None:
            error = self.build_error or "no settings yet"
            self.send({"op": "error", "id": number, "message": error})
            return
        try:
            width, height = int(message["width"]), int(message["height"])
            source = self.slot("input", message["input"], width, height)
            target = self.slot("output", message["output"], width, height)
            started = time.perf_counter()
            target.array[...] = self.live.process(source.array)
            seconds = time.perf_counter() - started
        except Exception as error:
            self.send({"op": "error", "id": number, "message": one_line(error)})
            return
        self.adapt_segmentation()
        stylizations = self.live.stylizations
        self.send({"op": "result", "id": number, "seconds": seconds, "stylizations": stylizations})

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
        for slot in self.slots.values():
            slot.close()
            slot.unlink()  # OBS removes them too; whoever is last wins
        self.slots.clear()


def serve(parent: int, messages_out: IO[str]) -> None:
    inbox: queue.Queue = queue.Queue()
    threading.Thread(
        target=read_messages, args=(sys.stdin.buffer, inbox), name="stdin", daemon=True
    ).start()
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            messages_out.write(json.dumps(message) + "\n")
            messages_out.flush()

    server = Server(send)
    held: list[Any] = []  # a message taken while looking for newer settings

    def next_message() -> Any:
        return held.pop() if held else inbox.get(timeout=PARENT_CHECK_SECONDS)

    try:
        while True:
            try:
                message = next_message()
            except queue.Empty:
                if not parent_alive(parent):
                    return
                continue
            if message is None or message.get("op") == "quit":
                return
            if message.get("op") == "settings":
                # Only the newest of several queued settings matters.
                while not held:
                    try:
                        following = inbox.get_nowait()
                    except queue.Empty:
                        break
                    if following is not None and following.get("op") == "settings":
                        message = following
                    else:
                        held.append(following)
                server.apply(dict(message.get("values") or {}))
            elif message.get("op") == "frame":
                server.frame(message)
            elif message.get("op") == "pace":
                server.pace(message.get("style_pause", 0.0), message.get("frame_interval", 0.0))
    finally:
        server.close()


def check(python_version: str) -> dict[str, Any]:
    """What the script's status shows: torch device, models ready, Python version."""
    from partialstyle import modelstore
    from partialstyle.device import resolve_device

    models = {name: modelstore.model_status(name) for name in MODELS}
    return {
        "python": python_version,
        "device": resolve_device("auto").type,
        "missing": [name for name, state in models.items() if state != "ready"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    parser.add_argument("--nice", type=int, default=10, help="lower the CPU priority by this")
    parser.add_argument("--check", action="store_true", help="print the environment, then exit")
    args = parser.parse_args(argv)

    messages_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if args.check:
        try:
            messages_out.write(json.dumps(check(version)) + "\n")
        except Exception as error:
            messages_out.write(json.dumps({"python": version, "error": one_line(error)}) + "\n")
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
