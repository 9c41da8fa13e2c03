"""The filter's properties dialog and its settings data, through ctypes on libobs.

OBS builds the dialog on its UI thread by calling the filter's get_properties, then calls every
property's "modified" callback once with the current settings, and again whenever the user
changes that property. The callbacks here keep the dialog true to the settings:

- each region's style list always holds the current value (a non-editable OBS list whose value
  is missing would select its first entry and overwrite the setting), shown by name;
- a chosen picture becomes the region's style, and a style picked from the list empties the
  picture field; a typed style (a one-line field) is applied as soon as it is valid, and a
  hint under the field says what is wrong otherwise;
- settings that cannot work here (YOLACT without weights or a GPU) are disabled, with the
  reason and the fix above them.

The status at the top and its refresh while the dialog is open are `partialstyle.obs.status`.
What the fields do is `partialstyle.obs.dialog_fields`.
"""

from __future__ import annotations

import ctypes
import sys
from ctypes import c_bool, c_char_p, c_int, c_size_t, c_void_p
from pathlib import Path
from typing import Any

from partialstyle.config import SEGMENTERS, UPSAMPLERS
from partialstyle.device import DEVICE_CHOICES
from partialstyle.obs import dialog_fields, libobs, status, ui_idle
from partialstyle.obs import settings as schema

OBS_TEXT_DEFAULT = 0
OBS_PATH_FILE = 0
OBS_TEXT_INFO_NORMAL = status.OBS_TEXT_INFO_NORMAL
OBS_TEXT_INFO_WARNING = status.OBS_TEXT_INFO_WARNING
PICTURE_FILTER = b"Pictures (*.jpg *.jpeg *.png *.bmp *.webp);;All files (*.*)"
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
    "obs_property_set_enabled": (None, [c_void_p, c_bool]),
    "obs_property_list_item_disable": (None, [c_void_p, c_size_t, c_bool]),
    "obs_property_text_set_info_type": (None, [c_void_p, c_int]),
    "obs_property_text_set_info_word_wrap": (None, [c_void_p, c_bool]),
    "obs_source_update_properties": (None, [c_void_p]),
    "obs_source_get_ref": (c_void_p, [c_void_p]),
    "obs_source_release": (None, [c_void_p]),
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
# torch's device for 'auto' as the script's environment check found it (None: not yet).
found_device: str | None = None


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
        for name, value in dialog_fields.style_items(region, values):
            obs.obs_property_list_add_string(style_list, name.encode(), value.encode())
    hint_property = obs.obs_properties_get(props, f"{region}_style_hint".encode())
    if hint_property:
        hint = dialog_fields.typed_hint(region, values)
        obs.obs_property_set_description(hint_property, (hint or "").encode())
        obs.obs_property_set_visible(hint_property, hint is not None)
        obs.obs_property_text_set_info_type(hint_property, OBS_TEXT_INFO_WARNING)


def _on_modified(action: int, props: int | None, prop: int | None, data: int | None) -> bool:
    """A field changed (or the dialog opened): write what follows from it; True asks OBS to
    rebuild the dialog's widgets."""
    global _opening
    kind, region = ACTIONS[action - 1]
    if kind == "opened":
        _opening = False
        return False
    values = read(data)
    if not _opening:
        ui_idle.edited()
    changes = dialog_fields.dialog_changes(kind, region, values, opening=_opening)
    obs = lib()
    for key, value in changes.items():
        obs.obs_data_set_string(data, key.encode(), value.encode())
    values.update(changes)
    root = _root(props)
    if _opening or kind == "text":
        # Typing: no rebuild, which would take keys typed meanwhile and the focus; the hint,
        # the list and the status show the typed style once the user pauses (see status).
        _sync_region(root, region, values)
        return False
    for other in schema.STYLE_REGIONS:  # OBS rebuilds every list from its stored items
        _sync_region(root, other, values)
    return True


def yolact_weights_found(values: dict[str, Any]) -> bool:
    """Whether YOLACT has weights: the chosen file, or any in the models folder."""
    from partialstyle.weights.files import models_dir

    chosen = str(values.get("yolact_weights", "")).strip()
    if chosen:
        return Path(chosen).expanduser().is_file()
    folder = models_dir() / "yolact"
    return folder.is_dir() and any(folder.glob("*.pth"))


def info(props: int, name: str, text: str, info_type: int = OBS_TEXT_INFO_NORMAL) -> int:
    """A word-wrapped text line in the dialog."""
    obs = lib()
    prop = obs.obs_properties_add_text(props, name.encode(), text.encode(), libobs.OBS_TEXT_INFO)
    obs.obs_property_text_set_info_type(prop, info_type)
    obs.obs_property_text_set_info_word_wrap(prop, True)
    return prop


def _disable_yolact(root: int, keep_weights: bool) -> None:
    """Grey out what needs YOLACT (the weights field stays usable when weights are what is
    missing: choosing a file there is one fix), and the segmenter's yolact choice."""
    obs = lib()
    for key in dialog_fields.YOLACT_KEYS:
        prop = obs.obs_properties_get(root, key.encode())
        if prop and not (keep_weights and key == "yolact_weights"):
            obs.obs_property_set_enabled(prop, False)
    segmenter = obs.obs_properties_get(root, b"segmenter")
    if segmenter:
        obs.obs_property_list_item_disable(segmenter, SEGMENTERS.index("yolact"), True)


def build(status_line: str, values: dict[str, Any] | None = None) -> int:
    """The properties dialog (obs_properties_t*): the status, then People, Background,
    Objects, Masks, Changes over time, Speed. `values`: the filter's settings (None for a
    dialog without a filter), for what can run here."""
    global _opening
    obs = lib()
    thunk = _thunk()
    root = obs.obs_properties_create()
    info(root, "status", status_line, status.status_info_type(status_line))
    values = {**schema.DEFAULTS, **(values or {})}
    yolact_problem = dialog_fields.yolact_unavailable(yolact_weights_found(values), found_device)

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
        on_change(choices(props, style_key, dialog_fields.style_items(region, {})), "list", region)
        if region in schema.TYPED_REGIONS:
            text_key = f"{region}_style_text"
            text = obs.obs_properties_add_text(
                props, text_key.encode(), label(text_key), OBS_TEXT_DEFAULT
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
    if yolact_problem:
        info(props, "yolact_problem", yolact_problem, OBS_TEXT_INFO_WARNING)
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

    if yolact_problem:
        _disable_yolact(root, keep_weights="weights" in yolact_problem)

    opened = obs.obs_properties_add_text(root, OPENED.encode(), b"", libobs.OBS_TEXT_INFO)
    obs.obs_property_set_visible(opened, False)
    on_change(opened, "opened")
    _opening = True
    return root
