"""Per-filter hotkeys: cycle the person and background styles, toggle the effect.

libobs gives no hotkeys to private sources (`obs_hotkey_register_source` refuses them), and
every filter is private once loaded from a scene collection or made by obs-websocket's
CreateSourceFilter. So each filter registers its hotkeys on the source it filters (its
parent), as other filter plugins do: OBS lists them under that source in Settings → Hotkeys
and saves their bindings in the source's "hotkeys" entry of the scene collection. The filter
removes them again when it is destroyed.
"""

from __future__ import annotations

from ctypes import c_void_p

from partialstyle.obs import libobs, properties
from partialstyle.obs.settings import cycle_style

# name, description, (setting, step) or None for the on/off toggle
HOTKEYS: tuple[tuple[str, str, tuple[str, int] | None], ...] = (
    ("partialstyle_next_person_style", "Next person style", ("person_style", 1)),
    ("partialstyle_previous_person_style", "Previous person style", ("person_style", -1)),
    ("partialstyle_next_background_style", "Next background style", ("background_style", 1)),
    (
        "partialstyle_previous_background_style",
        "Previous background style",
        ("background_style", -1),
    ),
    ("partialstyle_toggle", "Toggle Partial Style Transfer", None),
)


def register(parent: int, handle: int, thunk: object) -> dict[int, str]:
    """Register every hotkey on the filtered source `parent`; returns id → name."""
    obs = libobs.lib()
    ids = {}
    for name, description, _ in HOTKEYS:
        hotkey_id = obs.obs_hotkey_register_source(
            parent, name.encode(), f"Partial Style: {description}".encode(), thunk, c_void_p(handle)
        )
        if hotkey_id != libobs.OBS_INVALID_HOTKEY_ID:
            ids[hotkey_id] = name
    return ids


def unregister(ids: dict[int, str]) -> None:
    """Remove the hotkeys (harmless if the parent, and so they, are already gone)."""
    obs = libobs.lib()
    for hotkey_id in ids:
        obs.obs_hotkey_unregister(hotkey_id)


def trigger(source: int, name: str) -> None:
    """Do what hotkey `name` does to the filter `source` (settings change or on/off)."""
    obs = libobs.lib()
    action = next(action for hotkey, _, action in HOTKEYS if hotkey == name)
    if action is None:
        obs.obs_source_set_enabled(source, not obs.obs_source_enabled(source))
        return
    key, step = action
    settings = obs.obs_source_get_settings(source)
    try:
        current = (obs.obs_data_get_string(settings, key.encode()) or b"").decode()
    finally:
        obs.obs_data_release(settings)
    change = obs.obs_data_create()
    try:
        obs.obs_data_set_string(change, key.encode(), cycle_style(current, step).encode())
        obs.obs_source_update(source, change)
    finally:
        obs.obs_data_release(change)
    properties.lib().obs_source_update_properties(source)  # an open dialog shows the new style
