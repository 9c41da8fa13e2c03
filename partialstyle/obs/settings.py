"""The filter's settings: keys, defaults, the properties dialog, and conversion to the core.

The keys are a public API: users set them live with obs-websocket `SetSourceFilterSettings`.
Style values are the CLI's spec strings; the properties dialog's style lists add a readable
name in brackets ("multistyle:19 (starry-swirls)"), which `parse_style` ignores.
"""

from __future__ import annotations

import re
from ctypes import c_void_p
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from partialstyle.plan import RegionStyle, StylePlan
from partialstyle.style.names import MULTISTYLE_NAMES
from partialstyle.style.spec import StyleSpec

if TYPE_CHECKING:
    from partialstyle.config import PipelineConfig

# partialstyle.config imports torch (through partialstyle.device), which takes seconds; OBS's
# UI thread builds the dialog, so the choices are repeated here (a test keeps them in sync).
SEGMENTERS = ("auto", "selfie", "selfie-landscape")
DEVICES = ("auto", "cpu", "cuda", "mps")


# Measured on a 640x360 30 fps canvas with OBS rendering on the CPU (see the README).
MAX_FPS_DEFAULT = 2.0
# Keys the filter itself uses; every other key goes to the core's config or plan.
FILTER_ONLY = ("max_fps",)


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    label: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("person_style", "none", "Person style", "Style of people; none keeps them."),
    Setting("person_strength", 1.0, "Person strength", "0 keeps the original, 1 is full style."),
    Setting("person_preserve_colors", False, "Keep person colors", "Style only the brightness."),
    Setting("background_style", "multistyle:19", "Background style", "Style of everything else."),
    Setting("background_strength", 1.0, "Background strength", "0 keeps the original."),
    Setting(
        "background_preserve_colors", False, "Keep background colors", "Style only brightness."
    ),
    Setting("segmenter", "auto", "Person segmenter", "auto picks by the frame's shape."),
    Setting("mask_threshold", 0.5, "Mask threshold", "Person probability that counts as person."),
    Setting("mask_feather", 2.0, "Mask feather", "Softness of the person's edge, in pixels."),
    Setting("edge_refine", True, "Snap mask to edges", "Guided filter along image edges."),
    Setting(
        "temporal_smoothing", 0.5, "Temporal smoothing", "Higher hides mask flicker, lags more."
    ),
    Setting(
        "process_height", 360, "Processing height", "Lines the networks work at; 0 = source's."
    ),
    Setting("device", "auto", "Device", "auto uses a CUDA or Apple GPU when torch sees one."),
    Setting("threads", 1, "CPU threads", "torch threads; leave cores for OBS and its encoder."),
    Setting(
        "max_fps",
        MAX_FPS_DEFAULT,
        "Max styled frames/s",
        "Caps how often a frame is restyled, to leave the CPU to OBS; 0 = no cap.",
    ),
    Setting("show_mask", False, "Show mask", "Debug view: the person mask over the frame."),
)

DEFAULTS: dict[str, Any] = {setting.key: setting.default for setting in SETTINGS}
_BY_KEY = {setting.key: setting for setting in SETTINGS}

# What the style lists and the style hotkeys cycle through.
STYLE_CHOICES: tuple[str, ...] = ("none",) + tuple(
    f"multistyle:{index}" for index in range(len(MULTISTYLE_NAMES))
)


def style_label(spec: str) -> str:
    """'multistyle:19 (starry-swirls)': what the style lists show."""
    if spec.startswith("multistyle:") and spec[11:].isdigit():
        return f"{spec} ({MULTISTYLE_NAMES[int(spec[11:])]})"
    return spec


def parse_style(text: str) -> StyleSpec:
    """A spec string as typed or picked in the dialog (a trailing '(name)' is ignored)."""
    return StyleSpec.parse(re.sub(r"\s*\([^)]*\)\s*$", "", text))


def to_pipeline(values: dict[str, Any]) -> tuple[PipelineConfig, StylePlan]:
    """Turn settings into the core's config and plan; ValueError names the bad setting."""
    from partialstyle.config import PipelineConfig

    merged = {**DEFAULTS, **values}
    height = int(merged["process_height"])
    threads = int(merged["threads"])
    config = PipelineConfig(
        segmenter=str(merged["segmenter"]),
        process_height=height if height > 0 else None,
        mask_threshold=float(merged["mask_threshold"]),
        mask_feather=float(merged["mask_feather"]),
        edge_refine=bool(merged["edge_refine"]),
        temporal_smoothing=float(merged["temporal_smoothing"]),
        device=str(merged["device"]),
        threads=threads if threads > 0 else None,
        show_mask=bool(merged["show_mask"]),
    )
    regions = {}
    for region in ("person", "background"):
        try:
            style = parse_style(str(merged[f"{region}_style"]))
        except ValueError as error:
            raise ValueError(f"{region} style: {error}") from None
        regions[region] = RegionStyle(
            style,
            float(merged[f"{region}_strength"]),
            bool(merged[f"{region}_preserve_colors"]),
        )
    return config, StylePlan(**regions)


def cycle_style(current: str, step: int) -> str:
    """The next (+1) or previous (-1) entry of `STYLE_CHOICES` after the current style."""
    try:
        index = STYLE_CHOICES.index(str(parse_style(current)))
    except ValueError:  # a blend or something unparsable: start from the list's ends
        index = -1 if step > 0 else 0
    return STYLE_CHOICES[(index + step) % len(STYLE_CHOICES)]


# -- libobs side: obs_data_t and obs_properties_t through ctypes ------------------------------


def read(data: int | None) -> dict[str, Any]:
    """The filter's settings (obs_data_t*) as a plain dict with the defaults' types."""
    from partialstyle.obs.libobs import lib

    obs = lib()
    values: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
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
    from partialstyle.obs.libobs import lib

    obs = lib()
    for key, default in DEFAULTS.items():
        name = key.encode()
        if isinstance(default, bool):
            obs.obs_data_set_default_bool(data, name, default)
        elif isinstance(default, int):
            obs.obs_data_set_default_int(data, name, default)
        elif isinstance(default, float):
            obs.obs_data_set_default_double(data, name, default)
        else:
            obs.obs_data_set_default_string(data, name, default.encode())


def build_properties(status: str) -> int:
    """The properties dialog (obs_properties_t*), grouped Person / Background / Mask / Speed."""
    from partialstyle.obs import libobs
    from partialstyle.obs.libobs import lib

    obs = lib()
    root = obs.obs_properties_create()
    obs.obs_properties_add_text(root, b"status", status.encode(), libobs.OBS_TEXT_INFO)

    def group(name: str, label: str) -> int:
        props = obs.obs_properties_create()
        obs.obs_properties_add_group(
            root, name.encode(), label.encode(), libobs.OBS_GROUP_NORMAL, c_void_p(props)
        )
        return props

    def add(props: int, key: str, prop: int) -> None:
        obs.obs_property_set_long_description(prop, _BY_KEY[key].help.encode())

    def label(key: str) -> bytes:
        return _BY_KEY[key].label.encode()

    def choices(props: int, key: str, options: tuple[str, ...], editable: bool = False) -> int:
        kind = libobs.OBS_COMBO_TYPE_EDITABLE if editable else libobs.OBS_COMBO_TYPE_LIST
        prop = obs.obs_properties_add_list(
            props, key.encode(), label(key), kind, libobs.OBS_COMBO_FORMAT_STRING
        )
        for option in options:
            shown = style_label(option) if editable else option
            obs.obs_property_list_add_string(prop, shown.encode(), shown.encode())
        add(props, key, prop)
        return prop

    def slider(props: int, key: str, low: float, high: float, step: float) -> None:
        prop = obs.obs_properties_add_float_slider(props, key.encode(), label(key), low, high, step)
        add(props, key, prop)

    def toggle(props: int, key: str) -> None:
        add(props, key, obs.obs_properties_add_bool(props, key.encode(), label(key)))

    for region, title in (("person", "Person"), ("background", "Background")):
        props = group(region, title)
        choices(props, f"{region}_style", STYLE_CHOICES, editable=True)
        slider(props, f"{region}_strength", 0.0, 1.0, 0.05)
        toggle(props, f"{region}_preserve_colors")

    props = group("mask", "Person mask")
    choices(props, "segmenter", SEGMENTERS)
    slider(props, "mask_threshold", 0.05, 0.95, 0.05)
    slider(props, "mask_feather", 0.0, 20.0, 0.5)
    toggle(props, "edge_refine")
    slider(props, "temporal_smoothing", 0.0, 0.95, 0.05)
    toggle(props, "show_mask")

    props = group("speed", "Speed")
    prop = obs.obs_properties_add_int_slider(
        props, b"process_height", label("process_height"), 0, 1080, 8
    )
    obs.obs_property_int_set_suffix(prop, b" px")
    add(props, "process_height", prop)
    choices(props, "device", DEVICES)
    add(
        props,
        "threads",
        obs.obs_properties_add_int_slider(props, b"threads", label("threads"), 1, 16, 1),
    )
    slider(props, "max_fps", 0.0, 30.0, 0.5)
    return root
