"""The JSON-lines protocol between OBS and the shared inference process, in one place.

One inference process serves every filter instance in OBS; each instance is a *client* with
a number that every message carries. OBS writes to the process's stdin:

    Settings   a client's settings (the first one registers the client)
    Pace       the shortest pause between style runs, and OBS's frame interval
    Frame      a frame waits in the client's input slot; the result goes to its output slot
    Bye        the client is gone
    Quit       end the process

and the process answers on stdout:

    Ready      the client's first settings are loaded
    Result     a frame is done: the process's own seconds, style runs so far
    Error      a frame failed (`id` set) or the client's first settings did (`id` None)

`python -m partialstyle.obs.inference_server --check` prints one `Environment` instead.

Each message is a frozen dataclass; on the wire it is one JSON object per line whose "op"
names the class (`{"op": "frame", "client": 1, "id": 7, ...}`). `encode` and `decode` are
the only translations and `read_messages` the one reader, used by both ends. Nothing here
imports torch or numpy.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, ClassVar


@dataclass(frozen=True)
class Settings:
    op: ClassVar[str] = "settings"
    client: int
    values: dict[str, Any]


@dataclass(frozen=True)
class Pace:
    op: ClassVar[str] = "pace"
    client: int
    style_pause: float
    frame_interval: float


@dataclass(frozen=True)
class Frame:
    op: ClassVar[str] = "frame"
    client: int
    id: int
    input: str
    output: str
    width: int
    height: int


@dataclass(frozen=True)
class Bye:
    op: ClassVar[str] = "bye"
    client: int


@dataclass(frozen=True)
class Quit:
    op: ClassVar[str] = "quit"


@dataclass(frozen=True)
class Ready:
    op: ClassVar[str] = "ready"
    client: int


@dataclass(frozen=True)
class Result:
    op: ClassVar[str] = "result"
    client: int
    id: int
    seconds: float
    stylizations: int
    keyframe_age: float = 0.0  # seconds between this frame and the stylization carried onto it
    waits: int = 0  # frames so far that waited past the bound for the style thread's run
    in_line: int = 0  # of the stylizations, those run on the frame thread (past the bound)


@dataclass(frozen=True)
class Error:
    """A failure: of frame `id`, or with `id` None of the client's first settings."""

    op: ClassVar[str] = "error"
    client: int
    message: str
    id: int | None = None


@dataclass(frozen=True)
class Environment:
    """What the script's status shows about the project environment: its Python version,
    torch's device and the default models that are not ready, or why it could not tell."""

    op: ClassVar[str] = "environment"
    python: str = ""
    device: str = ""
    missing: tuple[str, ...] = ()
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "missing", tuple(self.missing))  # JSON gives a list


Message = Settings | Pace | Frame | Bye | Quit | Ready | Result | Error | Environment
_BY_OP: dict[str, type[Message]] = {
    kind.op: kind for kind in (Settings, Pace, Frame, Bye, Quit, Ready, Result, Error, Environment)
}


def encode(message: Message) -> bytes:
    return (json.dumps({"op": message.op, **vars(message)}) + "\n").encode()


def decode(line: bytes | str) -> Message | None:
    """The message on one line, or None if the line is not one (not JSON, an unknown op,
    missing or extra fields)."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        fields = json.loads(line)
        kind = _BY_OP.get(fields.pop("op", None))
        if kind is not None:
            return kind(**fields)
    return None


def read_messages(stream: IO[bytes], deliver: Callable[[Message | None], None]) -> None:
    """Every message on `stream` to `deliver`, then None when the stream ends (the other end
    closed it or died). Lines that are not messages are skipped."""
    with contextlib.suppress(OSError, ValueError):
        for line in stream:
            message = decode(line)
            if message is not None:
                deliver(message)
    deliver(None)
