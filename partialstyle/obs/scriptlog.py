"""Errors for OBS's Script Log window (Tools → Scripts → Script Log).

Only `obspython.script_log`, called while OBS runs one of the script's callbacks, reaches that
window under the script's name; the filter's errors arise on worker threads. So they wait here
and the script's timer (`obs_partialstyle.py`) hands them over twice a second; script_log also
writes them to the OBS log file. Without a loaded script they go straight to the log file.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from partialstyle.obs import libobs

_pending: deque[tuple[int, str]] = deque(maxlen=200)
_lock = threading.Lock()
_attached = False


def attach() -> None:
    """The script is loaded and drains messages from now on."""
    global _attached
    _attached = True


def detach() -> None:
    """The script is unloading: messages go to the log file again, the waiting ones too."""
    global _attached
    _attached = False
    drain(libobs.log)


def report(level: int, message: str) -> None:
    """Queue an error for the Script Log window (any thread). OBS raises that window for
    warnings too, so they, like everything else, only go to the log file."""
    with _lock:
        if _attached and level <= libobs.LOG_ERROR:
            _pending.append((level, message))
            return
    libobs.log(level, message)


def drain(write: Callable[[int, str], None]) -> int:
    """Hand every waiting message to `write(level, message)`; returns how many."""
    with _lock:
        messages = list(_pending)
        _pending.clear()
    for level, message in messages:
        write(level, message)
    return len(messages)
