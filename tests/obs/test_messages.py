"""The protocol between OBS and the inference process: every message survives the trip, and
whatever is not a message (a stray print, a torn line, another version's op) is skipped."""

from __future__ import annotations

import io
import json

import pytest

from partialstyle.obs import messages

EVERY_MESSAGE = [
    messages.Settings(3, {"person_style": "multistyle:4", "threads": 2, "show_mask": True}),
    messages.Pace(3, 0.25, 1 / 30),
    messages.Frame(3, 17, "/dev/shm/in", "/dev/shm/out", 640, 360),
    messages.Bye(3),
    messages.Quit(),
    messages.Ready(3),
    messages.Result(3, 17, 0.041, 5),
    messages.Error(3, "person style: unknown multistyle name 'x'"),
    messages.Error(3, "frame failed", 17),
    messages.Environment("3.11", "cpu", ("selfie",)),
    messages.Environment("3.11", error="no module named torch"),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_every_message_survives_encoding(message):
    line = messages.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["op"] == message.op
    assert messages.decode(line) == message


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"Traceback (most recent call last):\n",
        b'{"op": "frame", "client": 1, "id": 2',  # torn
        b"[1, 2]",
        b'"frame"',
        b'{"client": 1}',  # no op
        b'{"op": "resize", "client": 1}',  # an op this version does not know
        b'{"op": "frame", "client": 1, "id": 2}',  # fields missing
        b'{"op": "bye", "client": 1, "reason": "x"}',  # a field too many
    ],
)
def test_what_is_not_a_message_decodes_to_none(line):
    assert messages.decode(line) is None


def test_the_reader_delivers_messages_in_order_skips_the_rest_and_ends_with_none():
    stream = io.BytesIO(
        messages.encode(messages.Ready(1))
        + b"a stray print\n"
        + messages.encode(messages.Result(1, 1, 0.5, 1))
    )
    delivered = []
    messages.read_messages(stream, delivered.append)
    assert delivered == [messages.Ready(1), messages.Result(1, 1, 0.5, 1), None]
