"""The filter's settings: keys, defaults, the properties dialog, and conversion to the core.

The keys are a public API: users set them live with obs-websocket `SetSourceFilterSettings`.
Style values are the CLI's spec strings; the properties dialog's style lists add a readable
name in brackets ("multistyle:19 (starry-swirls)"), which `parse_style` ignores. Nothing here
imports torch: OBS's UI thread builds the dialog.
"""

from __future__ import annotations

import re
from ctypes import c_void_p
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from partialstyle import modelstore
from partialstyle.config import SEGMENTERS, UPSAMPLERS
from partialstyle.device import DEVICE_CHOICES
from partialstyle.plan import RegionStyle, StylePlan
from partialstyle.segment.classes import COCO_CLASSES
from partialstyle.style.names import MULTISTYLE_NAMES
from partialstyle.style.spec import StyleSpec

if TYPE_CHECKING:
    from partialstyle.config import PipelineConfig

# Measured on a 640x360 30 fps canvas with OBS rendering on the CPU (see the README).
MAX_FPS_DEFAULT = 2.0
# Keys the filter itself uses; every other key goes to the core's config or plan.
FILTER_ONLY = ("max_fps",)
# People with their own row in the dialog (`person1_style` … `person4_style`).
PEOPLE = 4
# What an empty per-person style shows in the dialog: that person keeps `person_style`.
SAME_AS_PEOPLE = "(same as Person style)"
# Objects a class region can pick: every COCO class but person (people have their own rows).
CLASS_CHOICES: tuple[str, ...] = tuple(name for name in COCO_CLASSES if name != "person")


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
    *(
        Setting(
            f"person{number}_style",
            "",
            f"Person {number} (from the left)",
            f"Style of the {ordinal} person from the left, followed as they move; "
            "empty = the Person style.",
        )
        for number, ordinal in enumerate(("1st", "2nd", "3rd", "4th"), start=1)
    ),
    Setting("background_style", "multistyle:19", "Background style", "Style of everything else."),
    Setting("background_strength", 1.0, "Background strength", "0 keeps the original."),
    Setting(
        "background_preserve_colors", False, "Keep background colors", "Style only brightness."
    ),
    Setting(
        "class_region",
        "",
        "Object class",
        "Objects of this COCO class get their own style "
        "(needs the YOLACT segmenter); empty = none.",
    ),  # fmt: skip
    Setting("class_style", "none", "Object style", "Style of the chosen objects."),
    Setting("class_strength", 1.0, "Object strength", "0 keeps the original."),
    Setting("segmenter", "auto", "Segmenter", "auto: YOLACT with weights and a GPU, else selfie."),
    Setting(
        "yolact_weights", "", "YOLACT weights", "A YOLACT .pth; empty = the first in models/yolact."
    ),
    Setting(
        "instance_every", 5, "YOLACT every n-th frame", "Masks are carried between YOLACT runs."
    ),
    Setting("mask_threshold", 0.5, "Mask threshold", "Person probability that counts as person."),
    Setting("mask_feather", 2.0, "Mask feather", "Softness of the person's edge, in pixels."),
    Setting("edge_refine", True, "Snap mask to edges", "Guided filter along image edges."),
    Setting(
        "temporal_smoothing", 0.5, "Temporal smoothing", "Higher hides mask flicker, lags more."
    ),
    Setting("show_mask", False, "Show mask", "Debug view: the person mask over the frame."),
    Setting(
        "morph_seconds", 0.5, "Style fade (seconds)", "A changed style fades in over this time."
    ),
    Setting(
        "stabilize", 0.5, "Stabilize", "Less shimmer where nothing moves; 0 = off, 0.95 = most."
    ),
    Setting(
        "process_height", 360, "Processing height", "Lines the networks work at; 0 = source's."
    ),
    Setting(
        "upsample",
        "bilinear",
        "Upscaling",
        "guided: edge-aware, sharper at a low processing height.",
    ),
    Setting("device", "auto", "Device", "auto uses a CUDA or Apple GPU when torch sees one."),
    Setting("threads", 1, "CPU threads", "torch threads; leave cores for OBS and its encoder."),
    Setting(
        "max_fps",
        MAX_FPS_DEFAULT,
        "Max styled frames/s",
        "Caps how often a frame is restyled, to leave the CPU to OBS; 0 = no cap.",
    ),
)

DEFAULTS: dict[str, Any] = {setting.key: setting.default for setting in SETTINGS}
_BY_KEY = {setting.key: setting for setting in SETTINGS}


def style_choices() -> tuple[str, ...]:
    """What the style lists and the style hotkeys offer: none, the 26 multistyle styles and
    every Johnson network installed now (`arbitrary:<picture>` is typed, not listed)."""
    multistyle = tuple(f"multistyle:{index}" for index in range(len(MULTISTYLE_NAMES)))
    return ("none", *multistyle, *(f"johnson:{name}" for name in modelstore.johnson_names()))


def style_label(spec: str) -> str:
    """'multistyle:19 (starry-swirls)': what the style lists show."""
    if spec.startswith("multistyle:") and spec[11:].isdigit():
        return f"{spec} ({MULTISTYLE_NAMES[int(spec[11:])]})"
    return spec


def parse_style(text: str) -> StyleSpec:
    """A spec string as typed or picked in the dialog (a trailing '(name)' is ignored)."""
    return StyleSpec.parse(re.sub(r"\s*\([^)]*\)\s*$", "", text))


def person_override(text: str) -> StyleSpec | None:
    """A per-person style, or None when it is empty (the person keeps `person_style`)."""
    text = text.strip()
    if not text or text == SAME_AS_PEOPLE:
        return None
    return parse_style(text)


def _style(merged: dict[str, Any], key: str, label: str) -> StyleSpec:
    try:
        return parse_style(str(merged[key]))
    except ValueError as error:
        raise ValueError(f"{label}: {error}") from None


def to_plan(values: dict[str, Any]) -> StylePlan:
    """The style plan the settings describe; ValueError names the bad setting."""
    merged = {**DEFAULTS, **values}
    regions: dict[str, RegionStyle] = {}
    for region in ("person", "background"):
        regions[region] = RegionStyle(
            _style(merged, f"{region}_style", f"{region} style"),
            float(merged[f"{region}_strength"]),
            bool(merged[f"{region}_preserve_colors"]),
        )
    for number in range(1, PEOPLE + 1):
        try:
            style = person_override(str(merged[f"person{number}_style"]))
        except ValueError as error:
            raise ValueError(f"person {number} style: {error}") from None
        if style is not None:
            regions[f"person:{number}"] = RegionStyle(
                style, regions["person"].strength, regions["person"].preserve_colors
            )
    coco_name = str(merged["class_region"]).strip()
    if coco_name:
        if coco_name not in CLASS_CHOICES:
            raise ValueError(
                f"object class {coco_name!r} is not a COCO class other than person "
                "(e.g. cat, dog, laptop)"
            )
        regions[f"class:{coco_name}"] = RegionStyle(
            _style(merged, "class_style", "object style"), float(merged["class_strength"])
        )
    return StylePlan.from_regions(regions)


def to_pipeline(values: dict[str, Any]) -> tuple[PipelineConfig, StylePlan]:
    """Turn settings into the core's config and plan; ValueError names the bad setting."""
    from partialstyle.config import PipelineConfig

    merged = {**DEFAULTS, **values}
    height = int(merged["process_height"])
    threads = int(merged["threads"])
    weights = str(merged["yolact_weights"]).strip()
    config = PipelineConfig(
        segmenter=str(merged["segmenter"]),
        process_height=height if height > 0 else None,
        mask_threshold=float(merged["mask_threshold"]),
        mask_feather=float(merged["mask_feather"]),
        edge_refine=bool(merged["edge_refine"]),
        temporal_smoothing=float(merged["temporal_smoothing"]),
        stabilize=float(merged["stabilize"]),
        morph_seconds=float(merged["morph_seconds"]),
        upsample=str(merged["upsample"]),
        yolact_weights=weights or None,
        instance_every=int(merged["instance_every"]),
        device=str(merged["device"]),
        threads=threads if threads > 0 else None,
        show_mask=bool(merged["show_mask"]),
    )
    return config, to_plan(merged)


def cycle_style(current: str, step: int, choices: tuple[str, ...] | None = None) -> str:
    """The next (+1) or previous (-1) entry of the style list after the current style."""
    choices = choices or style_choices()
    try:
        index = choices.index(str(parse_style(current)))
    except ValueError:  # a blend, a picture or something unparsable: start from the ends
        index = -1 if step > 0 else 0
    return choices[(index + step) % len(choices)]


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
    """The properties dialog (obs_properties_t*): People, Background, Object, Mask, Look over
    time, Speed."""
    from partialstyle.obs import libobs
    from partialstyle.obs.libobs import lib

    obs = lib()
    root = obs.obs_properties_create()
    obs.obs_properties_add_text(root, b"status", status.encode(), libobs.OBS_TEXT_INFO)
    styles = tuple(style_label(spec) for spec in style_choices())

    def group(name: str, label: str) -> int:
        props = obs.obs_properties_create()
        obs.obs_properties_add_group(
            root, name.encode(), label.encode(), libobs.OBS_GROUP_NORMAL, c_void_p(props)
        )
        return props

    def describe(key: str, prop: int) -> None:
        obs.obs_property_set_long_description(prop, _BY_KEY[key].help.encode())

    def label(key: str) -> bytes:
        return _BY_KEY[key].label.encode()

    def choices(props: int, key: str, options: list[tuple[str, str]], editable: bool) -> None:
        """A drop-down of (shown name, value); an editable one also takes typed values (its
        value is the text shown, so there name and value are the same)."""
        kind = libobs.OBS_COMBO_TYPE_EDITABLE if editable else libobs.OBS_COMBO_TYPE_LIST
        prop = obs.obs_properties_add_list(
            props, key.encode(), label(key), kind, libobs.OBS_COMBO_FORMAT_STRING
        )
        for name, value in options:
            obs.obs_property_list_add_string(prop, name.encode(), value.encode())
        describe(key, prop)

    def style_list(props: int, key: str, first: tuple[str, ...] = ()) -> None:
        choices(props, key, [(text, text) for text in (*first, *styles)], editable=True)

    def plain_list(props: int, key: str, options: tuple[str, ...]) -> None:
        choices(props, key, [(option, option) for option in options], editable=False)

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
    style_list(props, "person_style")
    slider(props, "person_strength", 0.0, 1.0, 0.05)
    toggle(props, "person_preserve_colors")
    for number in range(1, PEOPLE + 1):
        style_list(props, f"person{number}_style", (SAME_AS_PEOPLE,))

    props = group("background", "Background")
    style_list(props, "background_style")
    slider(props, "background_strength", 0.0, 1.0, 0.05)
    toggle(props, "background_preserve_colors")

    props = group("object", "Objects (YOLACT)")
    choices(
        props,
        "class_region",
        [("(none)", ""), *((name, name) for name in CLASS_CHOICES)],
        editable=False,
    )
    style_list(props, "class_style")
    slider(props, "class_strength", 0.0, 1.0, 0.05)

    props = group("mask", "Masks")
    plain_list(props, "segmenter", SEGMENTERS)
    describe(
        "yolact_weights",
        obs.obs_properties_add_path(
            props, b"yolact_weights", label("yolact_weights"), libobs.OBS_PATH_FILE,
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
    return root
