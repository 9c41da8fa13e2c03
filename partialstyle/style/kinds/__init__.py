"""Style kinds: one adapter per style network, all with the `StyleKind` interface.

The pipeline, the spec parser, the CLI's lists, the contact sheet, the benchmark and the
OBS style lists go through `KINDS` rather than naming kinds. To add a kind, write a module
with an object that satisfies `StyleKind` and add it to `KINDS`.
"""

from __future__ import annotations

from partialstyle.style.kinds.arbitrary import ARBITRARY
from partialstyle.style.kinds.base import Look, Networks, StyleKind, StylePass
from partialstyle.style.kinds.johnson import JOHNSON
from partialstyle.style.kinds.multistyle import MULTISTYLE
from partialstyle.style.kinds.none import NONE

KINDS: tuple[StyleKind, ...] = (NONE, MULTISTYLE, JOHNSON, ARBITRARY)

__all__ = [
    "KINDS",
    "NONE",
    "Look",
    "Networks",
    "StyleKind",
    "StylePass",
    "kind_named",
    "picture_spec",
    "restyling_specs",
    "spec_help",
]


def kind_named(name: str) -> StyleKind:
    """The kind called `name`; KeyError for a name no kind has."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(name)


def spec_help() -> str:
    """The one-line hint on how to write a style, naming every kind."""
    syntaxes = [kind.syntax for kind in KINDS]
    return f"use {', '.join(syntaxes[:-1])} or {syntaxes[-1]}"


def picture_spec(picture: str) -> str:
    """The spec that copies a picture file's style (the first kind that takes pictures)."""
    for kind in KINDS:
        spec = kind.picture_spec(picture)
        if spec is not None:
            return spec
    raise LookupError("no style kind takes pictures")


def restyling_specs() -> tuple[str, ...]:
    """Every style that restyles and works now without more from the user, kind by kind."""
    return tuple(spec for kind in KINDS if kind.restyles for spec in kind.installed())
