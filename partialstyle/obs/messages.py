"""The JSON-lines protocol between OBS and the shared inference process, in one place.

One inference process serves every filter instance in OBS; each instance is a *client* with
a number that every message carries. OBS writes to the process's stdin:

    {"op": "settings", "client": c, "values": {...}}   a client's settings (the first one
                                                        registers the client)
    {"op": "pace", "client": c, "style_pause": s, "frame_interval": t}
    {"op": "frame", "client": c, "id": n, "input": path, "output": path, "width": w, "height": h}
    {"op": "bye", "client": c}                          the client is gone
    {"op": "quit"}

and the process answers on stdout:

    {"op": "ready", "client": c}                        its first settings are loaded
    {"op": "error", "client": c, "message": m}          its first settings failed
    {"op": "result", "client": c, "id": n, "seconds": s, "stylizations": k}
    {"op": "error", "client": c, "id": n, "message": m} this frame failed (also: bad settings)

Messages are plain dicts (cheap to build, and what `json` gives back); the functions below are
the only places that build them, and `read_messages` is the one reader for both ends. Nothing
here imports torch or numpy.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import IO, Any

Message = dict[str, Any]


def settings(client: int, values: dict[str, Any]) -> Message:
    return {"op": "settings", "client": client, "values": values}


def pace(client: int, style_pause: float, frame_interval: float) -> Message:
    return {
        "op": "pace",
        "client": client,
        "style_pause": style_pause,
        "frame_interval": frame_interval,
    }


def frame(
    client: int, number: int, input_path: str, output_path: str, width: int, height: int
) -> Message:
    return {
        "op": "frame",
        "client": client,
        "id": number,
        "input": input_path,
        "output": output_path,
        "width": width,
        "height": height,
    }


def bye(client: int) -> Message:
    return {"op": "bye", "client": client}


def quit_service() -> Message:
    return {"op": "quit"}


def ready(client: int) -> Message:
    return {"op": "ready", "client": client}


def error(client: int, message: str, number: int | None = None) -> Message:
    """A failure; with `number`, of that frame, without, of the client's first settings."""
    reply: Message = {"op": "error", "client": client, "message": message}
    if number is not None:
        reply["id"] = number
    return reply


def result(client: int, number: int, seconds: float, stylizations: int) -> Message:
    return {
        "op": "result",
        "client": client,
        "id": number,
        "seconds": seconds,
        "stylizations": stylizations,
    }


def one_line(failure: BaseException) -> str:
    """An exception as the one line that reaches the user."""
    text = str(failure).strip() or type(failure).__name__
    return " ".join(text.split())


def encode(message: Message) -> bytes:
    return (json.dumps(message) + "\n").encode()


def read_messages(stream: IO[bytes], deliver: Callable[[Message | None], None]) -> None:
    """Every message on `stream` to `deliver`, then None when the stream ends (the other end
    closed it or died). Lines that are not JSON objects are skipped."""
    with contextlib.suppress(OSError, ValueError):
        for line in stream:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict):
                    deliver(message)
    deliver(None)
