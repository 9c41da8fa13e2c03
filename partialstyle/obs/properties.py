"""The filter's properties dialog and its settings data, through ctypes on libobs.

OBS builds the dialog on its UI thread by calling the filter's get_properties, then calls every
property's "modified" callback once with the current settings, and again whenever the user
changes that property. The callbacks here keep the dialog true to the settings:

- each region's style list always holds the current value (a non-editable OBS list whose value
  is missing would select its first entry and overwrite the setting), shown by name;
- a chosen picture becomes the region's style; a typed style is applied on Enter once valid,
  and a hint under the field says what is wrong otherwise (a multi-line text field: Enter
  adds a line there instead of closing the Filters window, as it does in one-line fields);
- `refresh_open_dialogs`, called twice a second by the script's timer, makes an open dialog
  rebuild itself when a filter's state changes (loading, running, an error and its fix).

Status texts have the state first; a last line starting with `MEASURED` holds numbers that
change all the time and do not count as a change of state.
"""

from __future__ import annotations

import ctypes
import sys
import time
from ctypes import c_bool, c_char_p, c_int, c_size_t, c_void_p
from typing import Any

from partialstyle.config import SEGMENTERS, UPSAMPLERS
from partialstyle.device import DEVICE_CHOICES
from partialstyle.obs import libobs
from partialstyle.obs import settings as schema

OBS_TEXT_MULTILINE = 2
OBS_PATH_FILE = 0
OBS_TEXT_INFO_NORMAL, OBS_TEXT_INFO_WARNING, OBS_TEXT_INFO_ERROR = 0, 1, 2
PICTURE_FILTER = b"Pictures (*.jpg *.jpeg *.png *.bmp *.webp);;All files (*.*)"
MEASURED = "Measured"
# The property whose callback libobs calls last when the dialog opens (see `_on_modified`).
OPENED = "partialstyle_dialog_opened"

# bool modified2(void *priv, obs_properties_t *props, obs_property_t *p, obs_data_t *settings)
MODIFIED2 = ctypes.CFUNCTYPE(c_bool, c_void_p, c_void_p, c_void_p, c_void_p)

_EXTRA_SIGNATURES: dict[str, tuple[Any, list]] = {
    "obs_property_set_modified_callback2": (None, [c_void_p, MODIFIED2, c_void_p]),
    "obs_properties_get": (c_void_p, [c_void_p, c_char_p]),
    "obs_properties_get_parent": (c_void_p, [c_void_p]),
    "obs_property_list_clear": (None, [c_void_p]),
    "obs_property_set_description": (None, [c_void_p, c_char_p]),
    "obs_property_set_visible": (None, [c_void_p, c_bool]),
    "obs_property_text_set_info_type": (None, [c_void_p, c_int]),
    "obs_property_text_set_info_word_wrap": (None, [c_void_p, c_bool]),
    "obs_source_update_properties": (None, [c_void_p]),
    "obs_source_get_settings": (c_void_p, [c_void_p]),
    "obs_data_release": (None, [c_void_p]),
    "obs_data_set_string": (None, [c_void_p, c_char_p, c_char_p]),
    "obs_filter_get_parent": (c_void_p, [c_void_p]),
    "obs_source_get_name": (c_char_p, [c_void_p]),
    "obs_property_list_add_string": (c_size_t, [c_void_p, c_char_p, c_char_p]),
}

# What each modified callback edits: (field kind, region); its index + 1 is the callback's priv.
ACTIONS: tuple[tuple[str, str], ...] = (
    *(("list", region) for region in schema.STYLE_REGIONS),
    *(("picture", region) for region in schema.STYLE_REGIONS),
    *(("text", region) for region in schema.TYPED_REGIONS),
    ("opened", ""),
)
THUNK_ATTRIBUTE = "dialog_modified_thunk"

_opening = False  # between get_properties and the OPENED callback
_shown_state: dict[int, str] = {}  # filter handle -> status state last seen by the refresher


def lib() -> ctypes.CDLL:
    obs = libobs.lib()
    if not getattr(obs, "_partialstyle_dialog_declared", False):
        for function, (restype, argtypes) in _EXTRA_SIGNATURES.items():
            declared = getattr(obs, function)
            declared.restype = restype
            declared.argtypes = argtypes
        obs._partialstyle_dialog_declared = True
    return obs


# -- settings data ------------------------------------------------------------------------


def read(data: int | None) -> dict[str, Any]:
    """The filter's settings (obs_data_t*) as a plain dict with the defaults' types."""
    obs = lib()
    values: dict[str, Any] = {}
    for key, default in schema.DEFAULTS.items():
        name = key.encode()
        if isinstance(default, bool):
            values[key] = bool(obs.obs_data_get_bool(data, name))
        elif isinstance(default, int):
            values[key] = int(obs.obs_data_get_int(data, name))
        elif isinstance(default, float):
            values[key] = float(obs.obs_data_get_double(data, name))
        else:
            values[key] = (obs.obs_data_get_string(data, name) or b"").decode("utf-8", "replace")
    return values


def write_defaults(data: int | None) -> None:
    obs = lib()
    for key, default in schema.DEFAULTS.items():
        name = key.encode()
        if isinstance(default, bool):
            obs.obs_data_set_default_bool(data, name, default)
        elif isinstance(default, int):
            obs.obs_data_set_default_int(data, name, default)
        elif isinstance(default, float):
            obs.obs_data_set_default_double(data, name, default)
        else:
            obs.obs_data_set_default_string(data, name, default.encode())


# -- status ---------------------------------------------------------------------------------


def status_text(
    state: str, error: str | None, problems: tuple[str, ...], fps: float, render_ms: float
) -> str:
    """The dialog's status: the state, what was not applied, and (running) a measurement."""
    if error:
        lines = [f"Error: {error} The source shows unstyled until this is fixed."]
    elif state == "loading":
        lines = ["Loading torch and the models… (the source shows unchanged until ready)"]
    else:
        lines = ["Running."]
    lines += problems
    if not error and state != "loading":
        lines.append(
            f"{MEASURED} at {time.strftime('%H:%M:%S')}: {fps:.1f} styled frames/s, "
            f"{render_ms:.2f} ms per frame on OBS's render thread."
        )
    return "\n".join(lines)


def status_state(text: str) -> str:
    """The part of a status text that counts as its state (no measurements)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith(MEASURED))


def status_info_type(text: str) -> int:
    if text.startswith("Error"):
        return OBS_TEXT_INFO_ERROR
    return (
        OBS_TEXT_INFO_WARNING if len(status_state(text).splitlines()) > 1 else OBS_TEXT_INFO_NORMAL
    )


def refresh_open_dialogs(shown: dict[int, str] | None = None) -> None:
    """Rebuild a filter's open properties dialog when its state changed since the last call.

    OBS's Filters window reloads the dialog on the filter's "update_properties" signal (queued
    to the UI thread). Measurements alone do not trigger it: a rebuild takes the keyboard
    focus and ends a slider drag. `shown` keeps each filter's state as last seen (this
    module's own record unless given).
    """
    shown = _shown_state if shown is None else shown
    from partialstyle.obs import source_info

    runtime = source_info.current()
    if runtime is None:
        return
    instances = dict(runtime.instances)
    for handle in list(shown):
        if handle not in instances:
            del shown[handle]
    for handle, instance in instances.items():
        state = status_state(instance.status())
        previous = shown.get(handle)
        shown[handle] = state
        if previous is not None and previous != state:
            lib().obs_source_update_properties(instance.source)


def source_label(filter_source: int | None) -> str:
    """ "'Camera' / 'Partial Style'": the filtered source and the filter, for log lines."""
    obs = lib()
    parent = obs.obs_filter_get_parent(filter_source) if filter_source else None

    def name(source: int | None) -> str:
        raw = obs.obs_source_get_name(source) if source else None
        return raw.decode("utf-8", "replace") if raw else "?"

    return f"'{name(parent)}' / '{name(filter_source)}'"


# -- the dialog -----------------------------------------------------------------------------


def _thunk() -> Any:
    """The one modified callback, kept for the life of the process (libobs keeps a raw
    pointer to it in every dialog), on the registered runtime when there is one."""
    from partialstyle.obs import source_info

    holder: Any = source_info.current() or sys.modules[__name__]
    thunk = getattr(holder, THUNK_ATTRIBUTE, None)
    if thunk is None:
        thunk = MODIFIED2(_dispatch)
        setattr(holder, THUNK_ATTRIBUTE, thunk)
    return thunk


def _dispatch(priv: int | None, props: int | None, prop: int | None, data: int | None) -> bool:
    """Calls the current copy of `_on_modified` and keeps exceptions out of libobs."""
    try:
        return bool(sys.modules[__name__]._on_modified(priv or 0, props, prop, data))
    except Exception as error:  # an exception escaping into libobs is only printed
        libobs.log(libobs.LOG_ERROR, f"properties dialog: {type(error).__name__}: {error}")
        return False


def _root(props: int | None) -> int | None:
    obs = lib()
    while props:
        parent = obs.obs_properties_get_parent(props)
        if not parent:
            break
        props = parent
    return props


def _sync_region(props: int | None, region: str, values: dict[str, Any]) -> None:
    """Refill a region's style list (current value included) and its typed field's hint."""
    obs = lib()
    style_list = obs.obs_properties_get(props, f"{region}_style".encode())
    if style_list:
        obs.obs_property_list_clear(style_list)
        for name, value in schema.style_items(region, values):
            obs.obs_property_list_add_string(style_list, name.encode(), value.encode())
    hint_property = obs.obs_properties_get(props, f"{region}_style_hint".encode())
    if hint_property:
        hint = schema.typed_hint(region, values)
        obs.obs_property_set_description(hint_property, (hint or "").encode())
        obs.obs_property_set_visible(hint_property, hint is not None)
        if hint is not None:
            info = OBS_TEXT_INFO_NORMAL if hint.startswith("Press") else OBS_TEXT_INFO_WARNING
            obs.obs_property_text_set_info_type(hint_property, info)


def _on_modified(action: int, props: int | None, prop: int | None, data: int | None) -> bool:
    """A field changed (or the dialog opened): write what follows from it; True asks OBS to
    rebuild the dialog's widgets."""
    global _opening
    kind, region = ACTIONS[action - 1]
    if kind == "opened":
        _opening = False
        return False
    values = read(data)
    # While opening, a stored picture or typed text is not a new choice.
    new_choice = kind == "list" or not _opening
    changes = schema.dialog_changes(kind, region, values) if new_choice else {}
    obs = lib()
    for key, value in changes.items():
        obs.obs_data_set_string(data, key.encode(), value.encode())
    values.update(changes)
    root = _root(props)
    if _opening:
        _sync_region(root, region, values)
        return False
    if kind == "text" and not changes:
        return False  # still typing: a rebuild would move the cursor to the start
    for other in schema.STYLE_REGIONS:  # OBS rebuilds every list from its stored items
        _sync_region(root, other, values)
    return True


def build(status: str) -> int:
    """The properties dialog (obs_properties_t*): the status, then People, Background,
    Objects, Masks, Changes over time, Speed."""
    global _opening
    obs = lib()
    thunk = _thunk()
    root = obs.obs_properties_create()
    status_property = obs.obs_properties_add_text(
        root, b"status", status.encode(), libobs.OBS_TEXT_INFO
    )
    obs.obs_property_text_set_info_type(status_property, status_info_type(status))
    obs.obs_property_text_set_info_word_wrap(status_property, True)

    def on_change(prop: int, kind: str, region: str = "") -> None:
        action = ACTIONS.index((kind, region)) + 1
        obs.obs_property_set_modified_callback2(prop, thunk, c_void_p(action))

    def group(name: str, label: str) -> int:
        props = obs.obs_properties_create()
        obs.obs_properties_add_group(
            root, name.encode(), label.encode(), libobs.OBS_GROUP_NORMAL, c_void_p(props)
        )
        return props

    def describe(key: str, prop: int) -> int:
        obs.obs_property_set_long_description(prop, schema.SETTINGS_BY_KEY[key].help.encode())
        return prop

    def label(key: str) -> bytes:
        return schema.SETTINGS_BY_KEY[key].label.encode()

    def choices(props: int, key: str, options: list[tuple[str, str]]) -> int:
        prop = obs.obs_properties_add_list(
            props,
            key.encode(),
            label(key),
            libobs.OBS_COMBO_TYPE_LIST,
            libobs.OBS_COMBO_FORMAT_STRING,
        )
        for name, value in options:
            obs.obs_property_list_add_string(prop, name.encode(), value.encode())
        return describe(key, prop)

    def style_fields(props: int, region: str) -> None:
        style_key = f"{region}_style"
        on_change(choices(props, style_key, schema.style_items(region, {})), "list", region)
        if region in schema.TYPED_REGIONS:
            text_key = f"{region}_style_text"
            text = obs.obs_properties_add_text(
                props, text_key.encode(), label(text_key), OBS_TEXT_MULTILINE
            )
            on_change(describe(text_key, text), "text", region)
            hint = obs.obs_properties_add_text(
                props, f"{region}_style_hint".encode(), b"", libobs.OBS_TEXT_INFO
            )
            obs.obs_property_text_set_info_word_wrap(hint, True)
            obs.obs_property_set_visible(hint, False)
        picture_key = f"{region}_picture"
        picture = obs.obs_properties_add_path(
            props, picture_key.encode(), label(picture_key), OBS_PATH_FILE, PICTURE_FILTER, None
        )
        on_change(describe(picture_key, picture), "picture", region)

    def plain_list(props: int, key: str, options: tuple[str, ...]) -> None:
        choices(props, key, [(option, option) for option in options])

    def slider(props: int, key: str, low: float, high: float, step: float) -> None:
        prop = obs.obs_properties_add_float_slider(props, key.encode(), label(key), low, high, step)
        describe(key, prop)

    def int_slider(props: int, key: str, low: int, high: int, step: int = 1, suffix: str = ""):
        prop = obs.obs_properties_add_int_slider(props, key.encode(), label(key), low, high, step)
        if suffix:
            obs.obs_property_int_set_suffix(prop, suffix.encode())
        describe(key, prop)

    def toggle(props: int, key: str) -> None:
        describe(key, obs.obs_properties_add_bool(props, key.encode(), label(key)))

    props = group("person", "People")
    style_fields(props, "person")
    slider(props, "person_strength", 0.0, 1.0, 0.05)
    toggle(props, "person_preserve_colors")
    for number in range(1, schema.PEOPLE + 1):
        style_fields(props, f"person{number}")

    props = group("background", "Background")
    style_fields(props, "background")
    slider(props, "background_strength", 0.0, 1.0, 0.05)
    toggle(props, "background_preserve_colors")

    props = group("object", "Objects (YOLACT)")
    choices(props, "class_region", [("(none)", ""), *((n, n) for n in schema.CLASS_CHOICES)])
    style_fields(props, "class")
    slider(props, "class_strength", 0.0, 1.0, 0.05)

    props = group("mask", "Masks")
    plain_list(props, "segmenter", SEGMENTERS)
    describe(
        "yolact_weights",
        obs.obs_properties_add_path(
            props, b"yolact_weights", label("yolact_weights"), OBS_PATH_FILE,
            b"YOLACT weights (*.pth)", None,
        ),
    )  # fmt: skip
    int_slider(props, "instance_every", 1, 30)
    slider(props, "mask_threshold", 0.05, 0.95, 0.05)
    slider(props, "mask_feather", 0.0, 20.0, 0.5)
    toggle(props, "edge_refine")
    slider(props, "temporal_smoothing", 0.0, 0.95, 0.05)
    toggle(props, "show_mask")

    props = group("time", "Changes over time")
    slider(props, "morph_seconds", 0.0, 5.0, 0.1)
    slider(props, "stabilize", 0.0, 0.95, 0.05)

    props = group("speed", "Speed")
    int_slider(props, "process_height", 0, 1080, 8, " px")
    plain_list(props, "upsample", UPSAMPLERS)
    plain_list(props, "device", DEVICE_CHOICES)
    int_slider(props, "threads", 1, 16)
    slider(props, "max_fps", 0.0, 30.0, 0.5)

    opened = obs.obs_properties_add_text(root, OPENED.encode(), b"", libobs.OBS_TEXT_INFO)
    obs.obs_property_set_visible(opened, False)
    on_change(opened, "opened")
    _opening = True
    return root
