"""Whether the user is in the middle of something in OBS's window that a dialog rebuild
would cut short: an open drop-down list, a file chooser, a mouse drag (a slider), a help
text (tooltip) being read, typing.

OBS rebuilds a filter's whole dialog to show a new status (see `partialstyle.obs.status`);
that closes an open list, ends a drag, hides a tooltip and takes the keyboard focus. Qt knows
about popups, modal dialogs, tooltips and pressed mouse buttons; its static functions are
called through ctypes on Qt's own thread (an OBS UI task queued by `poll`), and the answer
is kept for the script's timer. Without Qt (tests, another toolkit) only the time since the
last edit counts.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from ctypes import c_bool, c_int, c_void_p
from typing import Any

from partialstyle.obs import libobs

# A dialog field changed less than this ago: the user is still editing.
EDIT_QUIET_SECONDS = 4.0
OBS_TASK_UI = 0
TASK = ctypes.CFUNCTYPE(None, c_void_p)
_QT_CALLS = {
    "modal": ("libQt5Widgets.so.5", "_ZN12QApplication17activeModalWidgetEv", c_void_p),
    "popup": ("libQt5Widgets.so.5", "_ZN12QApplication17activePopupWidgetEv", c_void_p),
    "mouse": ("libQt5Gui.so.5", "_ZN15QGuiApplication12mouseButtonsEv", c_int),
    "tooltip": ("libQt5Widgets.so.5", "_ZN8QToolTip9isVisibleEv", c_bool),
}
THUNK_ATTRIBUTE = "ui_idle_task_thunk"

_qt: dict[str, Any] = {}
_last_edit = 0.0
_ui_busy: str | None = None  # what Qt said at the last poll


def edited() -> None:
    """A dialog field changed (called by the dialog's callbacks and the filter's update)."""
    global _last_edit
    _last_edit = time.monotonic()


def _qt_functions() -> dict[str, Any]:
    """Qt's functions from the Qt already loaded in this process (found once)."""
    if not _qt:
        for name, (library, symbol, restype) in _QT_CALLS.items():
            try:
                function = getattr(ctypes.CDLL(library, mode=os.RTLD_NOLOAD), symbol)
            except (OSError, AttributeError):
                continue
            function.restype, function.argtypes = restype, []
            _qt[name] = function
    return _qt


def qt_busy() -> str | None:
    """What Qt says the user is doing ("a list is open", ...), None when nothing; call on
    Qt's thread. None also when Qt's functions cannot be found."""
    reasons = {
        "modal": "a dialog is open",
        "popup": "a list is open",
        "mouse": "dragging",
        "tooltip": "a help text is shown",
    }
    for name, function in _qt_functions().items():
        if function():
            return reasons[name]
    return None


def _on_ui_thread(_: int | None) -> None:
    global _ui_busy
    try:
        _ui_busy = sys.modules[__name__].qt_busy()
    except Exception:  # never into libobs
        _ui_busy = None


def _task() -> ctypes._CFuncPtr:
    """The UI task's ctypes thunk, kept for the life of the process (libobs may still hold
    it after a script reload)."""
    from partialstyle.obs import source_info

    holder = source_info.current() or sys.modules[__name__]
    thunk = getattr(holder, THUNK_ATTRIBUTE, None)
    if thunk is None:
        thunk = TASK(lambda param: sys.modules[__name__]._on_ui_thread(param))
        setattr(holder, THUNK_ATTRIBUTE, thunk)
    return thunk


def poll() -> None:
    """Ask Qt's thread what the user is doing; `idle` uses the answer from now on."""
    obs = libobs.lib()
    queue_task = obs.obs_queue_task
    queue_task.restype, queue_task.argtypes = None, [c_int, TASK, c_void_p, c_bool]
    queue_task(OBS_TASK_UI, _task(), None, False)


def idle(now: float | None = None) -> bool:
    """Whether a dialog rebuild would interrupt nothing the user is doing."""
    now = time.monotonic() if now is None else now
    return _ui_busy is None and now - _last_edit >= EDIT_QUIET_SECONDS
