"""Ask an X11 application to quit the way a window manager does: WM_DELETE_WINDOW.

OBS 29 on Linux handles SIGINT by calling its main window's close() from inside the signal
handler (`ctrlc_handler` in UI/obs-app.cpp), which is not async-signal-safe: when the signal
lands while the Qt thread holds Xlib's lock or is in the middle of a widget update, OBS hangs
(seen: the main thread blocked in xcb_take_socket under QWidget::close_helper) or crashes
(seen: SIGSEGV in QWidget::event), with or without our script. Sending the main window a
WM_DELETE_WINDOW client message instead makes Qt close it from its own event loop, which is
exactly what clicking the window's close button does. Only libX11 (an OBS dependency) is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import POINTER, Structure, Union, byref, c_char_p, c_int, c_long, c_ulong, c_void_p

Window = c_ulong
Atom = c_ulong
CLIENT_MESSAGE = 33
NO_EVENT_MASK = 0


class _ClientMessageData(Union):
    _fields_ = [("b", ctypes.c_char * 20), ("s", ctypes.c_short * 10), ("l", c_long * 5)]


class _ClientMessage(Structure):
    _fields_ = [
        ("type", c_int),
        ("serial", c_ulong),
        ("send_event", c_int),
        ("display", c_void_p),
        ("window", Window),
        ("message_type", Atom),
        ("format", c_int),
        ("data", _ClientMessageData),
    ]


# Xlib's default error handler exits the process; windows may vanish while we look at them.
_ERROR_HANDLER = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p)
_ignore_errors = _ERROR_HANDLER(lambda display, event: 0)


class _Event(Union):
    """XEvent: every event kind padded to 24 longs."""

    _fields_ = [("client", _ClientMessage), ("pad", c_long * 24)]


def _xlib() -> ctypes.CDLL:
    path = ctypes.util.find_library("X11") or "libX11.so.6"
    xlib = ctypes.CDLL(path)
    xlib.XOpenDisplay.restype = c_void_p
    xlib.XOpenDisplay.argtypes = [c_char_p]
    xlib.XCloseDisplay.argtypes = [c_void_p]
    xlib.XDefaultRootWindow.restype = Window
    xlib.XDefaultRootWindow.argtypes = [c_void_p]
    xlib.XInternAtom.restype = Atom
    xlib.XInternAtom.argtypes = [c_void_p, c_char_p, c_int]
    xlib.XQueryTree.argtypes = [
        c_void_p, Window, POINTER(Window), POINTER(Window), POINTER(POINTER(Window)),
        POINTER(ctypes.c_uint),
    ]  # fmt: skip
    xlib.XFetchName.argtypes = [c_void_p, Window, POINTER(c_char_p)]
    xlib.XFree.argtypes = [c_void_p]
    xlib.XSendEvent.argtypes = [c_void_p, Window, c_int, c_long, POINTER(_Event)]
    xlib.XFlush.argtypes = [c_void_p]
    xlib.XSync.argtypes = [c_void_p, c_int]
    xlib.XSetErrorHandler.restype = c_void_p
    xlib.XSetErrorHandler.argtypes = [_ERROR_HANDLER]
    xlib.XSetErrorHandler(_ignore_errors)
    return xlib


def _children(xlib: ctypes.CDLL, display: int, window: int) -> list[int]:
    root, parent = Window(), Window()
    children, count = POINTER(Window)(), ctypes.c_uint()
    if not xlib.XQueryTree(
        display, window, byref(root), byref(parent), byref(children), byref(count)
    ):
        return []
    found = [children[index] for index in range(count.value)]
    if children:
        xlib.XFree(children)
    return found


def _name(xlib: ctypes.CDLL, display: int, window: int) -> str:
    name = c_char_p()
    if not xlib.XFetchName(display, window, byref(name)) or not name.value:
        return ""
    text = name.value.decode("utf-8", "replace")
    xlib.XFree(ctypes.cast(name, c_void_p))
    return text


def close_windows(display_name: str, title_prefix: str) -> int:
    """Send WM_DELETE_WINDOW to every top-level window whose title starts with
    `title_prefix` on `display_name` (e.g. ":61"); returns how many got it."""
    xlib = _xlib()
    display = xlib.XOpenDisplay(display_name.encode())
    if not display:
        raise RuntimeError(f"cannot open X display {display_name}")
    try:
        protocols = xlib.XInternAtom(display, b"WM_PROTOCOLS", 0)
        delete = xlib.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
        sent = 0
        for window in _children(xlib, display, xlib.XDefaultRootWindow(display)):
            if not _name(xlib, display, window).startswith(title_prefix):
                continue
            event = _Event()
            event.client.type = CLIENT_MESSAGE
            event.client.window = window
            event.client.message_type = protocols
            event.client.format = 32
            event.client.data.l[0] = delete
            event.client.data.l[1] = 0  # CurrentTime
            xlib.XSendEvent(display, window, 0, NO_EVENT_MASK, byref(event))
            sent += 1
        xlib.XSync(display, 0)  # errors (a window already gone) arrive now, and are ignored
        return sent
    finally:
        xlib.XCloseDisplay(display)
