"""ctypes declarations of the libobs functions the filter calls.

OBS's Python bindings (`obspython`) cannot register sources and cannot pass pixel buffers, so
the filter talks to libobs directly. Only what the filter uses is declared here; the values of
the enums are those of libobs 29-32 (checked against `obspython` in tests/obs/test_libobs.py).
ctypes calls release the GIL, so libobs may call back into Python from other threads meanwhile.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from ctypes import (
    POINTER,
    c_bool,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_void_p,
)

# enum obs_source_type and output flags
OBS_SOURCE_TYPE_FILTER = 1
OBS_SOURCE_VIDEO = 1 << 0
OBS_SOURCE_ASYNC = 1 << 2
OBS_SOURCE_CUSTOM_DRAW = 1 << 3
OBS_SOURCE_SRGB = 1 << 15

# graphics enums
GS_RGBA = 3
GS_ZS_NONE = 0
GS_CLEAR_COLOR = 1 << 0
GS_BLEND_ZERO = 0
GS_BLEND_ONE = 1
GS_BLEND_INVSRCALPHA = 5
GS_DYNAMIC = 1 << 1
OBS_EFFECT_DEFAULT = 0

# properties enums
OBS_COMBO_TYPE_EDITABLE = 1
OBS_COMBO_TYPE_LIST = 2
OBS_COMBO_FORMAT_STRING = 3
OBS_TEXT_DEFAULT = 0
OBS_TEXT_INFO = 3
OBS_GROUP_NORMAL = 1
OBS_PATH_FILE = 0

OBS_INVALID_HOTKEY_ID = ctypes.c_size_t(-1).value

# log levels
LOG_ERROR = 100
LOG_WARNING = 200
LOG_INFO = 300

# Callback types of obs_source_info and hotkeys.
GET_NAME = ctypes.CFUNCTYPE(c_void_p, c_void_p)
CREATE = ctypes.CFUNCTYPE(c_void_p, c_void_p, c_void_p)
DESTROY = ctypes.CFUNCTYPE(None, c_void_p)
GET_SIZE = ctypes.CFUNCTYPE(c_uint32, c_void_p)
GET_DEFAULTS = ctypes.CFUNCTYPE(None, c_void_p)
GET_PROPERTIES = ctypes.CFUNCTYPE(c_void_p, c_void_p)
UPDATE = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)
NOTIFY = ctypes.CFUNCTYPE(None, c_void_p)
VIDEO_TICK = ctypes.CFUNCTYPE(None, c_void_p, c_float)
VIDEO_RENDER = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)
HOTKEY = ctypes.CFUNCTYPE(None, c_void_p, c_size_t, c_void_p, c_bool)

_SIGNATURES: dict[str, tuple[type | None, list]] = {
    # sources and filters
    "obs_register_source_s": (None, [c_void_p, c_size_t]),
    "obs_filter_get_target": (c_void_p, [c_void_p]),
    "obs_filter_get_parent": (c_void_p, [c_void_p]),
    "obs_source_get_base_width": (c_uint32, [c_void_p]),
    "obs_source_get_base_height": (c_uint32, [c_void_p]),
    "obs_source_skip_video_filter": (None, [c_void_p]),
    "obs_source_video_render": (None, [c_void_p]),
    "obs_source_get_name": (c_char_p, [c_void_p]),
    "obs_source_get_output_flags": (c_uint32, [c_void_p]),
    # OBS's own frame timing
    "obs_get_lagged_frames": (c_uint32, []),
    "obs_get_total_frames": (c_uint32, []),
    "obs_get_active_fps": (c_double, []),
    "obs_get_video": (c_void_p, []),
    "video_output_get_skipped_frames": (c_uint32, [c_void_p]),
    "video_output_get_total_frames": (c_uint32, [c_void_p]),
    "obs_source_get_settings": (c_void_p, [c_void_p]),
    "obs_source_update": (None, [c_void_p, c_void_p]),
    "obs_source_enabled": (c_bool, [c_void_p]),
    "obs_source_set_enabled": (None, [c_void_p, c_bool]),
    # settings
    "obs_data_create": (c_void_p, []),
    "obs_data_release": (None, [c_void_p]),
    "obs_data_get_string": (c_char_p, [c_void_p, c_char_p]),
    "obs_data_get_double": (c_double, [c_void_p, c_char_p]),
    "obs_data_get_int": (c_int64, [c_void_p, c_char_p]),
    "obs_data_get_bool": (c_bool, [c_void_p, c_char_p]),
    "obs_data_set_string": (None, [c_void_p, c_char_p, c_char_p]),
    "obs_data_set_default_string": (None, [c_void_p, c_char_p, c_char_p]),
    "obs_data_set_default_double": (None, [c_void_p, c_char_p, c_double]),
    "obs_data_set_default_int": (None, [c_void_p, c_char_p, c_int64]),
    "obs_data_set_default_bool": (None, [c_void_p, c_char_p, c_bool]),
    # properties
    "obs_properties_create": (c_void_p, []),
    "obs_properties_add_list": (c_void_p, [c_void_p, c_char_p, c_char_p, c_int, c_int]),
    "obs_property_list_add_string": (c_size_t, [c_void_p, c_char_p, c_char_p]),
    "obs_properties_add_float_slider": (
        c_void_p,
        [c_void_p, c_char_p, c_char_p, c_double, c_double, c_double],
    ),
    "obs_properties_add_int_slider": (
        c_void_p,
        [c_void_p, c_char_p, c_char_p, c_int, c_int, c_int],
    ),
    "obs_properties_add_bool": (c_void_p, [c_void_p, c_char_p, c_char_p]),
    "obs_properties_add_text": (c_void_p, [c_void_p, c_char_p, c_char_p, c_int]),
    "obs_properties_add_path": (
        c_void_p,
        [c_void_p, c_char_p, c_char_p, c_int, c_char_p, c_char_p],
    ),
    "obs_properties_add_group": (c_void_p, [c_void_p, c_char_p, c_char_p, c_int, c_void_p]),
    "obs_property_set_long_description": (None, [c_void_p, c_char_p]),
    "obs_property_float_set_suffix": (None, [c_void_p, c_char_p]),
    "obs_property_int_set_suffix": (None, [c_void_p, c_char_p]),
    # hotkeys
    "obs_hotkey_register_source": (c_size_t, [c_void_p, c_char_p, c_char_p, HOTKEY, c_void_p]),
    "obs_hotkey_unregister": (None, [c_size_t]),
    # graphics
    "obs_enter_graphics": (None, []),
    "obs_leave_graphics": (None, []),
    "gs_texrender_create": (c_void_p, [c_int, c_int]),
    "gs_texrender_destroy": (None, [c_void_p]),
    "gs_texrender_reset": (None, [c_void_p]),
    "gs_texrender_begin": (c_bool, [c_void_p, c_uint32, c_uint32]),
    "gs_texrender_end": (None, [c_void_p]),
    "gs_texrender_get_texture": (c_void_p, [c_void_p]),
    "gs_clear": (None, [c_uint32, c_void_p, c_float, c_uint8]),
    "gs_ortho": (None, [c_float] * 6),
    "gs_blend_state_push": (None, []),
    "gs_blend_state_pop": (None, []),
    "gs_blend_function": (None, [c_int, c_int]),
    "gs_stagesurface_create": (c_void_p, [c_uint32, c_uint32, c_int]),
    "gs_stagesurface_destroy": (None, [c_void_p]),
    "gs_stage_texture": (None, [c_void_p, c_void_p]),
    "gs_stagesurface_map": (c_bool, [c_void_p, POINTER(POINTER(c_uint8)), POINTER(c_uint32)]),
    "gs_stagesurface_unmap": (None, [c_void_p]),
    "gs_texture_create": (c_void_p, [c_uint32, c_uint32, c_int, c_uint32, c_void_p, c_uint32]),
    "gs_texture_destroy": (None, [c_void_p]),
    "gs_texture_set_image": (None, [c_void_p, c_void_p, c_uint32, c_bool]),
    "gs_framebuffer_srgb_enabled": (c_bool, []),
    "gs_get_linear_srgb": (c_bool, []),
    "gs_set_linear_srgb": (None, [c_bool]),
    "gs_enable_framebuffer_srgb": (None, [c_bool]),
    "obs_get_base_effect": (c_void_p, [c_int]),
    "gs_effect_get_param_by_name": (c_void_p, [c_void_p, c_char_p]),
    "gs_effect_set_texture_srgb": (None, [c_void_p, c_void_p]),
    "gs_effect_loop": (c_bool, [c_void_p, c_char_p]),
    "gs_draw_sprite": (None, [c_void_p, c_uint32, c_uint32, c_uint32]),
}

_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    """The libobs already loaded in this process, with argument and result types declared."""
    global _lib
    if _lib is None:
        name = {"win32": "obs.dll", "darwin": "libobs.framework/libobs"}.get(sys.platform)
        name = name or ctypes.util.find_library("obs") or "libobs.so.0"
        loaded = ctypes.CDLL(name)
        for function, (restype, argtypes) in _SIGNATURES.items():
            declared = getattr(loaded, function)
            declared.restype = restype
            declared.argtypes = argtypes
        # blog is variadic: always pass one "%s" argument.
        loaded.blog.restype = None
        loaded.blog.argtypes = [c_int, c_char_p, c_char_p]
        _lib = loaded
    return _lib


def log(level: int, message: str) -> None:
    """Write one line to the OBS log (thread-safe; usable from any thread)."""
    lib().blog(level, b"[partialstyle] %s", message.encode("utf-8", "replace"))
