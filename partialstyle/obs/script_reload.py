"""Reload obs_partialstyle.py the way Tools → Scripts → "Reload Scripts" does, from a hotkey.

The Scripts window calls libobs-scripting's `obs_script_reload` on OBS's UI thread. The
"Reload the Partial Style Transfer script" hotkey (also reachable through obs-websocket's
TriggerHotkeyByName) queues the same call as a UI task, which lets developers and the tests
exercise a real reload without clicking through the dialog.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from types import ModuleType

from partialstyle.obs import libobs, source_info

HOTKEY_NAME = "partialstyle_reload_script"
HOTKEY_DESCRIPTION = "Reload the Partial Style Transfer script"
OBS_TASK_UI = 0
TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _script_handle(module: ModuleType) -> int:
    """The obs_script_t* OBS stored in the script module as the capsule __script_data__."""
    capsule = getattr(module, "__script_data__", None)
    if capsule is None:
        raise RuntimeError("this OBS does not expose the script's handle (__script_data__)")
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, None)


def queue_reload(module: ModuleType) -> None:
    """Ask OBS's UI thread to reload `module`'s script (returns at once)."""
    runtime = source_info.current()
    if runtime is None:
        raise RuntimeError("the filter is not registered")
    script = _script_handle(module)
    name = ctypes.util.find_library("obs-scripting") or "libobs-scripting.so.1"
    scripting = ctypes.CDLL(name)
    scripting.obs_script_reload.restype = ctypes.c_bool
    scripting.obs_script_reload.argtypes = [ctypes.c_void_p]

    def reload(param: int | None) -> None:
        libobs.log(libobs.LOG_INFO, "reloading obs_partialstyle.py")
        scripting.obs_script_reload(script)

    # The script module is re-executed during the task: keep the thunk in the runtime.
    runtime.reload_task = TASK(reload)
    obs = libobs.lib()
    obs.obs_queue_task.restype = None
    obs.obs_queue_task.argtypes = [ctypes.c_int, TASK, ctypes.c_void_p, ctypes.c_bool]
    obs.obs_queue_task(OBS_TASK_UI, runtime.reload_task, None, False)
