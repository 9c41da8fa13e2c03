"""Registering the filter with libobs: the obs_source_info prefix and the callback thunks.

libobs keeps raw pointers to the ctypes thunks and the strings for the life of the process,
and an id can be registered only once. OBS's "Reload Scripts" re-executes the script module, so
everything libobs points to lives in one `Runtime` object parked in `sys.modules`, which a
reload does not touch. The thunks look up `runtime.handler` on every call: a reload swaps the
handler and existing filter instances keep working.
"""

from __future__ import annotations

import atexit
import ctypes
import sys
import traceback
from ctypes import c_char_p, c_int, c_uint32
from typing import Any

from partialstyle.obs import libobs

RUNTIME_KEY = "_partialstyle_obs_runtime"


class ObsSourceInfo(ctypes.Structure):
    """The leading fields of `struct obs_source_info` (unchanged from OBS 29 to 32).

    `obs_register_source_s` copies `sizeof` bytes and zero-fills the rest, so a prefix is legal.
    """

    _fields_ = [
        ("id", c_char_p),
        ("type", c_int),
        ("output_flags", c_uint32),
        ("get_name", libobs.GET_NAME),
        ("create", libobs.CREATE),
        ("destroy", libobs.DESTROY),
        ("get_width", libobs.GET_SIZE),
        ("get_height", libobs.GET_SIZE),
        ("get_defaults", libobs.GET_DEFAULTS),
        ("get_properties", libobs.GET_PROPERTIES),
        ("update", libobs.UPDATE),
        ("activate", libobs.NOTIFY),
        ("deactivate", libobs.NOTIFY),
        ("show", libobs.NOTIFY),
        ("hide", libobs.NOTIFY),
        ("video_tick", libobs.VIDEO_TICK),
        ("video_render", libobs.VIDEO_RENDER),
    ]


def _label(args: tuple) -> str:
    """ "'Camera' / 'Partial Style': " when the call is about a filter instance, else ""."""
    try:
        return f"{args[0].label}: " if args and hasattr(args[0], "label") else ""
    except Exception:  # the instance is half gone: say nothing rather than fail again
        return ""


class Runtime:
    """Process-wide state that must outlive script reloads: thunks, strings, instances."""

    def __init__(self, source_id: str, display_name: str):
        self.source_id = source_id.encode()
        self.display_name = ctypes.create_string_buffer(display_name.encode())
        self.handler: Any = None
        self.instances: dict[int, Any] = {}
        self.next_handle = 1
        self.info: ObsSourceInfo | None = None
        self.hotkey_thunk = libobs.HOTKEY(self._on_hotkey)
        self.reload_task: Any = None
        self._reported: set[str] = set()

    # Each thunk catches everything: an exception escaping into libobs is only printed.

    def _call(self, name: str, default: Any, *args: Any) -> Any:
        try:
            return getattr(self.handler, name)(*args)
        except Exception:
            self.report_once(f"{_label(args)}{name} failed:\n{traceback.format_exc()}")
            return default

    def report_once(self, message: str) -> None:
        if message not in self._reported:
            self._reported.add(message)
            libobs.log(libobs.LOG_ERROR, message)

    def _get_name(self, type_data: int | None) -> int:
        return ctypes.addressof(self.display_name)

    def _create(self, settings: int | None, source: int | None) -> int | None:
        handle = self.next_handle
        self.next_handle += 1
        instance = self._call("create", None, settings, source, handle)
        if instance is None:
            return None
        self.instances[handle] = instance
        return handle

    def _destroy(self, handle: int | None) -> None:
        instance = self.instances.pop(handle or 0, None)
        if instance is not None:
            self._call("destroy", None, instance)

    def _get_defaults(self, settings: int | None) -> None:
        self._call("get_defaults", None, settings)

    def _get_properties(self, handle: int | None) -> int | None:
        return self._call("get_properties", None, self.instances.get(handle or 0))

    def _update(self, handle: int | None, settings: int | None) -> None:
        instance = self.instances.get(handle or 0)
        if instance is not None:
            self._call("update", None, instance, settings)

    def _video_tick(self, handle: int | None, seconds: float) -> None:
        instance = self.instances.get(handle or 0)
        if instance is not None:
            self._call("video_tick", None, instance, seconds)

    def _video_render(self, handle: int | None, effect: int | None) -> None:
        instance = self.instances.get(handle or 0)
        if instance is None or not self._call("video_render", False, instance, effect):
            source = getattr(instance, "source", None)
            if source:
                libobs.lib().obs_source_skip_video_filter(source)

    def _on_hotkey(self, handle: int | None, hotkey_id: int, hotkey: int | None, pressed: bool):
        instance = self.instances.get(handle or 0)
        if instance is not None and pressed:
            self._call("hotkey", None, instance, hotkey_id)

    def shutdown(self) -> None:
        """Stop every instance's threads and inference process before Python finalizes
        (OBS unloads scripts on exit; Python threads alive then can crash the process)."""
        for instance in list(self.instances.values()):
            self._call("shutdown", None, instance)

    def register(self, output_flags: int) -> None:
        info = ObsSourceInfo()
        info.id = self.source_id
        info.type = libobs.OBS_SOURCE_TYPE_FILTER
        info.output_flags = output_flags
        info.get_name = libobs.GET_NAME(self._get_name)
        info.create = libobs.CREATE(self._create)
        info.destroy = libobs.DESTROY(self._destroy)
        info.get_defaults = libobs.GET_DEFAULTS(self._get_defaults)
        info.get_properties = libobs.GET_PROPERTIES(self._get_properties)
        info.update = libobs.UPDATE(self._update)
        info.video_tick = libobs.VIDEO_TICK(self._video_tick)
        info.video_render = libobs.VIDEO_RENDER(self._video_render)
        self.info = info  # the struct keeps its thunks alive as long as it lives
        libobs.lib().obs_register_source_s(ctypes.byref(info), ctypes.sizeof(info))


def install(source_id: str, display_name: str, output_flags: int, handler: Any) -> Runtime:
    """Register the filter once per process; later calls (script reloads) swap the handler."""
    runtime = current()
    if runtime is None or runtime.source_id != source_id.encode():
        runtime = Runtime(source_id, display_name)
        runtime.handler = handler
        runtime.register(output_flags)
        sys.modules[RUNTIME_KEY] = runtime  # type: ignore[assignment]
        atexit.register(runtime.shutdown)
    elif runtime.handler is not handler:
        libobs.log(
            libobs.LOG_INFO,
            f"script reloaded: new callbacks for {len(runtime.instances)} existing filter(s)",
        )
    runtime.handler = handler
    return runtime


def current() -> Any:
    """The registered runtime, if the filter has been registered in this process.

    Checked by attribute, not class: the object may come from an older copy of this module.
    """
    runtime = sys.modules.get(RUNTIME_KEY)
    return runtime if hasattr(runtime, "instances") and hasattr(runtime, "handler") else None
