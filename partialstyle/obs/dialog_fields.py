"""What the filter dialog's own fields do, apart from drawing them (`properties`): the
style lists, typed styles, picture choosers, their hints, and which settings apply here.

Pure functions of the settings (`partialstyle.obs.settings`); nothing here talks to libobs
or imports torch, so they are tested without OBS.
"""

from __future__ import annotations

import re
from typing import Any

from partialstyle.obs.settings import (
    DEFAULTS,
    SAME_AS_PEOPLE,
    SETTINGS_BY_KEY,
    TYPED_REGIONS,
    falls_back,
    same_style,
    style_choices,
    style_label,
    style_problem,
)
from partialstyle.style.kinds import picture_spec
from partialstyle.style.spec import StyleSpec


def style_items(region: str, values: dict[str, Any]) -> list[tuple[str, str]]:
    """(shown name, value) of a region's style list: every style on offer, the region's
    chosen picture, and the current value, which is always an item so the list shows it."""
    current = str(values.get(f"{region}_style", DEFAULTS[f"{region}_style"]))
    picture = str(values.get(f"{region}_picture", "")).strip()
    items = [(SAME_AS_PEOPLE, "")] if falls_back(region) else []
    items += [(style_label(spec), spec) for spec in style_choices()]
    if picture:
        spec = picture_spec(picture)
        style = StyleSpec.parse(spec)
        items.append((style.style_kind.label(style), spec))
    for index, (label, value) in enumerate(items):
        if same_style(value, current):
            items[index] = (label, current)  # the exact text, so OBS finds it
            return items
    items.insert(1 if falls_back(region) else 0, (style_label(current), current))
    return items


def dialog_changes(
    kind: str, region: str, values: dict[str, Any], opening: bool = False
) -> dict[str, str]:
    """What the dialog writes after the user edits a region's `kind` of field:

    - "list" (a style picked): the typed field shows the picked style, ready to edit, and
      the picture field empties unless the picked style is that picture;
    - "picture" (a file chosen): the region's style becomes that picture;
    - "text" (typed, one line): the style, as soon as the text is a valid style.

    While the dialog is `opening` (OBS shows every field's stored value; the dialog is also
    rebuilt to show a new status), nothing is a new choice: only an empty typed field is
    filled with the current style.
    """
    style_key, text_key = f"{region}_style", f"{region}_style_text"
    picture_key = f"{region}_picture"
    typed = region in TYPED_REGIONS
    if opening:
        empty = typed and not str(values.get(text_key, "")).strip()
        return {text_key: str(values.get(style_key, ""))} if kind == "list" and empty else {}
    if kind == "list":
        style = str(values.get(style_key, ""))
        changes = {text_key: style} if typed else {}
        picture = str(values.get(picture_key, "")).strip()
        if picture and not same_style(picture_spec(picture), style):
            changes[picture_key] = ""
        return changes
    if kind == "picture":
        picture = str(values.get(picture_key, "")).strip()
        if not picture or style_problem(picture_spec(picture)):
            return {}
        style = picture_spec(picture)
        return {style_key: style, text_key: style} if typed else {style_key: style}
    if kind == "text":
        text = str(values.get(text_key, ""))
        line = " ".join(text.split())  # a pasted line break or stray spaces
        changes = {text_key: line} if line != text else {}
        current = str(values.get(style_key, ""))
        if line and style_problem(line) is None and not same_style(line, current):
            changes[style_key] = line
        return changes
    raise ValueError(f"unknown dialog field kind {kind!r}")


def for_dialog(problem: str) -> str:
    """A style problem as the dialog says it: without the command-line advice the CLI
    adds (the dialog's lists and Browse buttons are the way there)."""
    return re.sub(r";\s*run `[^`]*`.*$", "", problem).rstrip(". ") + "."


def typed_hint(region: str, values: dict[str, Any]) -> str | None:
    """What the dialog says under a region's typed field, or None when it matches the style."""
    text = str(values.get(f"{region}_style_text", "")).strip()
    if not text or same_style(text, str(values.get(f"{region}_style", ""))):
        return None
    problem = style_problem(text)
    return f"Not applied: {for_dialog(problem)}" if problem else None


def typed_problems(values: dict[str, Any]) -> tuple[str, ...]:
    """A line per typed style that is not applied because it is not valid (for the status)."""
    lines = []
    for region in TYPED_REGIONS:
        hint = typed_hint(region, values)
        if hint is not None:
            label = SETTINGS_BY_KEY[f"{region}_style_text"].label
            lines.append(f"{label}: {hint[len('Not applied: ') :]}")
    return tuple(lines)


# Settings that only matter with the YOLACT segmenter (objects, instance masks).
YOLACT_KEYS: tuple[str, ...] = (
    "class_region",
    "class_style",
    "class_style_text",
    "class_picture",
    "class_strength",
    "yolact_weights",
    "instance_every",
)
YOLACT_FETCH = "partialstyle models fetch yolact-resnet50"


def yolact_unavailable(weights_found: bool, device: str | None) -> str | None:
    """Why YOLACT cannot run here (one line with the fix), or None when it can or when the
    device is not known yet. `device` is what torch's 'auto' resolves to."""
    if not weights_found:
        return f"Objects need YOLACT weights: run `{YOLACT_FETCH}`, then reopen this dialog."
    if device == "cpu":
        return "Objects need YOLACT, which needs a GPU (CUDA or Apple): none was found."
    return None
