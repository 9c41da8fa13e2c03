"""Style specs: the strings users type to pick a style ("none", "multistyle:7", blends).

The same strings work in the CLI, the OBS filter's settings and obs-websocket scripts, so they
are parsed in one place and turned into a frozen `StyleSpec`. Each kind (partialstyle.style.kinds)
parses and writes its own part after the colon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from partialstyle.style.names import NUM_MULTISTYLE

if TYPE_CHECKING:
    from partialstyle.style.kinds import StyleKind


@dataclass(frozen=True)
class StyleSpec:
    """One region's style.

    multistyle: normalised (style id, weight) pairs for the 26-style network.
    johnson: `source` is a network name in models/johnson/ or a path to a .pth checkpoint.
    arbitrary: `source` is the path of a picture whose style is copied.
    """

    kind: str = "none"
    weights: tuple[tuple[int, float], ...] = ()
    source: str = ""

    @classmethod
    def parse(cls, text: str) -> StyleSpec:
        """Parse a spec string; raise ValueError with a one-line hint on anything malformed."""
        # The kinds build specs, so they are imported when a spec is parsed.
        from partialstyle.style.kinds import NONE, kind_named, spec_help

        text = text.strip()
        if text in ("", NONE.name):
            return cls(NONE.name)
        name, sep, body = text.partition(":")
        name = name.strip().lower()
        if not sep:
            raise ValueError(f"style {text!r} is missing its kind; {spec_help()}")
        try:
            kind = kind_named(name)
        except KeyError:
            raise ValueError(f"unknown style kind {name!r} in {text!r}; {spec_help()}") from None
        return kind.parse(body, text)

    @property
    def style_kind(self) -> StyleKind:
        """The `StyleKind` adapter that parses, loads and runs this spec."""
        from partialstyle.style.kinds import kind_named

        return kind_named(self.kind)

    @property
    def is_none(self) -> bool:
        return not self.style_kind.restyles

    def weight_vector(self) -> list[float]:
        """The 26 mixing weights of a multistyle spec (they sum to 1)."""
        vector = [0.0] * NUM_MULTISTYLE
        for index, weight in self.weights:
            vector[index] = weight
        return vector

    def __str__(self) -> str:
        return self.style_kind.text(self)
