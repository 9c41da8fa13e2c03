"""The filter's settings: keys, defaults, validation and conversion to the core.

The keys are a public API: users set them live with obs-websocket `SetSourceFilterSettings`.
Style values are the CLI's spec strings. The properties dialog (`partialstyle.obs.properties`)
adds a few keys of its own, listed in `DIALOG_ONLY`: a picture chooser and a typed style per
region, which write the region's style key once the choice is valid; that module also reads,
writes and draws the settings through libobs. Nothing here imports torch or talks to libobs:
OBS's UI thread uses it, and the tests run without OBS. The style plan is built with
`partialstyle.plan.plan_from_requests`, as the CLI builds its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from partialstyle.plan import RegionRequest, StylePlan, plan_from_requests
from partialstyle.segment.classes import COCO_CLASSES
from partialstyle.style.kinds import KINDS
from partialstyle.style.spec import StyleSpec

if TYPE_CHECKING:
    from partialstyle.config import PipelineConfig

# 0: the style networks run as often as the CPU OBS leaves allows (see obs.pacing).
MAX_FPS_DEFAULT = 0.0
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
    Setting(
        "person_style_text",
        "",
        "Person style, typed",
        "Any style spec, e.g. multistyle:3=0.5,12=0.5; applied to person_style as soon as "
        "it is valid. Dialog only.",
    ),
    Setting(
        "person_picture",
        "",
        "Person style picture",
        "Any picture as the people's style: choosing one sets person_style to "
        "arbitrary:<picture>. Dialog only.",
    ),
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
    *(
        Setting(
            f"person{number}_picture",
            "",
            f"Person {number} picture",
            f"Any picture as person {number}'s style: choosing one sets person{number}_style "
            "to arbitrary:<picture>. Dialog only.",
        )
        for number in range(1, 5)
    ),
    Setting("background_style", "multistyle:19", "Background style", "Style of everything else."),
    Setting(
        "background_style_text",
        "",
        "Background style, typed",
        "Any style spec; applied to background_style as soon as it is valid. Dialog only.",
    ),
    Setting(
        "background_picture",
        "",
        "Background style picture",
        "Any picture as the background's style: choosing one sets background_style to "
        "arbitrary:<picture>. Dialog only.",
    ),
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
    Setting(
        "class_style_text",
        "",
        "Object style, typed",
        "Any style spec; applied to class_style as soon as it is valid. Dialog only.",
    ),
    Setting(
        "class_picture",
        "",
        "Object style picture",
        "Any picture as the objects' style: choosing one sets class_style to "
        "arbitrary:<picture>. Dialog only.",
    ),
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
        "morph_seconds",
        0.5,
        "Style fade (seconds)",
        "A newly chosen style fades in over this many seconds; 0 = switch at once.",
    ),
    Setting(
        "stabilize",
        0.5,
        "Stabilize",
        "Less shimmer where nothing moves; 0 = off, 0.95 = most (slower to follow motion).",
    ),
    Setting(
        "process_height",
        360,
        "Processing height (0 = source's)",
        "Lines the networks work at: lower is faster and coarser; 0 = the source's own height.",
    ),
    Setting(
        "upsample",
        "bilinear",
        "Upscaling",
        "guided: edge-aware, sharper at a low processing height.",
    ),
    Setting("device", "auto", "Device", "auto uses a CUDA or Apple GPU when torch sees one."),
    Setting(
        "threads",
        1,
        "CPU threads",
        "CPU threads the networks use; leave cores free for OBS and its encoder.",
    ),
    Setting(
        "max_fps",
        MAX_FPS_DEFAULT,
        "Max style runs/s (0 = auto)",
        "Every frame is styled; this caps how often the style networks refresh it; "
        "0 = automatic (as often as OBS leaves time).",
    ),
)

DEFAULTS: dict[str, Any] = {setting.key: setting.default for setting in SETTINGS}
SETTINGS_BY_KEY: dict[str, Setting] = {setting.key: setting for setting in SETTINGS}


# Regions with a style list in the dialog; person1..person4 fall back to `person_style`.
STYLE_REGIONS: tuple[str, ...] = (
    "person",
    *(f"person{number}" for number in range(1, PEOPLE + 1)),
    "background",
    "class",
)
# Regions that also have a typed-style field (the per-person rows have a list and a picture).
TYPED_REGIONS: tuple[str, ...] = ("person", "background", "class")
# Keys only the dialog uses: they write a region's `<region>_style` once the choice is valid.
DIALOG_ONLY: tuple[str, ...] = (
    *(f"{region}_picture" for region in STYLE_REGIONS),
    *(f"{region}_style_text" for region in TYPED_REGIONS),
)


def falls_back(region: str) -> bool:
    """True for person1..person4, whose empty style means "the Person style"."""
    return region.startswith("person") and region != "person"


def style_choices() -> tuple[str, ...]:
    """What the style lists and the style hotkeys offer: every kind's installed styles (none,
    the 26 multistyle styles, every Johnson network installed now); pictures come from each
    region's picture chooser."""
    return tuple(spec for kind in KINDS for spec in kind.installed())


def style_label(spec: str) -> str:
    """How a style list shows a spec: by name first ("starry-swirls (multistyle:19)")."""
    try:
        style = parse_style(spec)
    except ValueError:
        return f"Not valid: {spec}"
    return style.style_kind.label(style)


def without_label(text: str) -> str:
    """A style as typed or picked in the dialog without the trailing '(name)' a list shows."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", text)


def parse_style(text: str) -> StyleSpec:
    """A spec string as typed or picked in the dialog (a trailing '(name)' is ignored)."""
    return StyleSpec.parse(without_label(text))


def person_override(text: str) -> StyleSpec | None:
    """A per-person style, or None when it is empty (the person keeps `person_style`)."""
    text = text.strip()
    if not text or text == SAME_AS_PEOPLE:
        return None
    return parse_style(text)


def same_style(a: str, b: str) -> bool:
    """Whether two style texts mean the same style (per-person empties included)."""
    try:
        return person_override(a) == person_override(b)
    except ValueError:
        return a.strip() == b.strip()


def style_problem(text: str, empty_allowed: bool = False) -> str | None:
    """What is wrong with a style text, or None when the filter can use it now.

    Beyond parsing, Johnson networks and pictures must exist: a typed name is often a
    prefix of the real one ("johnson:can" on the way to "johnson:candy").
    """
    try:
        style = person_override(text) if empty_allowed else parse_style(text)
    except ValueError as error:
        return str(error)
    return None if style is None else style.style_kind.problem(style)


def keep_valid_styles(
    values: dict[str, Any], previous: dict[str, Any] | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """`values` with every unusable style replaced by the `previous` one, and a line per
    replacement saying what is wrong. Without `previous` (a new filter) nothing is replaced
    and the inference process reports the error."""
    kept = dict(values)
    problems = []
    for region in STYLE_REGIONS:
        key = f"{region}_style"
        problem = style_problem(str(kept.get(key, DEFAULTS[key])), falls_back(region))
        if problem is None or previous is None:
            continue
        kept[key] = previous.get(key, DEFAULTS[key])
        shown = style_label(str(kept[key])) if str(kept[key]).strip() else "the Person style"
        problems.append(f"{SETTINGS_BY_KEY[key].label}: {problem}. Still showing {shown}.")
    return kept, tuple(problems)


def same_effect(values: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two settings differ at most in the dialog's own fields (nothing to redo)."""
    keys = (set(values) | set(other)) - set(DIALOG_ONLY)
    return all(values.get(key) == other.get(key) for key in keys)


def to_plan(values: dict[str, Any]) -> StylePlan:
    """The style plan the settings describe; ValueError names the bad setting."""
    merged = {**DEFAULTS, **values}
    person, background = (
        RegionRequest(
            region,
            without_label(str(merged[f"{region}_style"])),
            float(merged[f"{region}_strength"]),
            bool(merged[f"{region}_preserve_colors"]),
            source=f"{region} style",
        )
        for region in ("person", "background")
    )
    requests = [person, background]
    for number in range(1, PEOPLE + 1):
        text = str(merged[f"person{number}_style"]).strip()
        if text and text != SAME_AS_PEOPLE:  # empty: this person keeps the Person style
            requests.append(
                RegionRequest(
                    f"person:{number}",
                    without_label(text),
                    person.strength,
                    person.preserve_colors,
                    source=f"person {number} style",
                )
            )
    coco_name = str(merged["class_region"]).strip()
    if coco_name:
        if coco_name not in CLASS_CHOICES:
            raise ValueError(
                f"object class {coco_name!r} is not a COCO class other than person "
                "(e.g. cat, dog, laptop)"
            )
        style = without_label(str(merged["class_style"]))
        strength = float(merged["class_strength"])
        requests.append(RegionRequest(f"class:{coco_name}", style, strength, source="object style"))
    return plan_from_requests(requests)


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
