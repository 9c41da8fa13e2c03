"""Style specs: the strings users type to pick a style ("none", "multistyle:7", blends).

The same strings work in the CLI, the OBS filter's settings and obs-websocket scripts, so they
are parsed in one place and turned into a frozen `StyleSpec`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from partialstyle.style.names import MULTISTYLE_NAMES, NUM_MULTISTYLE

KINDS = ("none", "multistyle", "johnson", "arbitrary")

_HELP = (
    "use none, multistyle:<id or name>, a blend like multistyle:3=0.5,12=0.5, "
    "johnson:<name or .pth file> or arbitrary:<picture file>"
)


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
        text = text.strip()
        if text in ("", "none"):
            return cls("none")
        kind, sep, body = text.partition(":")
        kind = kind.strip().lower()
        if not sep:
            raise ValueError(f"style {text!r} is missing its kind; {_HELP}")
        if kind == "multistyle":
            return cls("multistyle", _parse_multistyle_weights(body, text))
        if kind in ("johnson", "arbitrary"):
            if not body.strip():
                raise ValueError(f"{kind} style {text!r} needs a name or file after the colon")
            return cls(kind, source=body.strip())
        raise ValueError(f"unknown style kind {kind!r} in {text!r}; {_HELP}")

    @property
    def is_none(self) -> bool:
        return self.kind == "none"

    def weight_vector(self) -> list[float]:
        """The 26 mixing weights of a multistyle spec (they sum to 1)."""
        vector = [0.0] * NUM_MULTISTYLE
        for index, weight in self.weights:
            vector[index] = weight
        return vector

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        if self.kind in ("johnson", "arbitrary"):
            return f"{self.kind}:{self.source}"
        if len(self.weights) == 1:
            return f"multistyle:{self.weights[0][0]}"
        return "multistyle:" + ",".join(f"{i}={w:g}" for i, w in self.weights)


def multistyle_index(token: str) -> int:
    """A style number (0-25) or one of the short names in `MULTISTYLE_NAMES`."""
    token = token.strip().lower()
    if token.isdigit():
        index = int(token)
        if not 0 <= index < NUM_MULTISTYLE:
            raise ValueError(
                f"multistyle id {index} is out of range; ids are 0 to {NUM_MULTISTYLE - 1}"
            )
        return index
    if token in MULTISTYLE_NAMES:
        return MULTISTYLE_NAMES.index(token)
    raise ValueError(
        f"unknown multistyle name {token!r}; run `partialstyle styles` to list names and ids"
    )


def _parse_multistyle_weights(body: str, text: str) -> tuple[tuple[int, float], ...]:
    totals: dict[int, float] = {}
    for part in body.split(","):
        token, has_weight, weight_text = part.partition("=")
        if not token.strip():
            raise ValueError(f"empty style in {text!r}; {_HELP}")
        try:
            weight = float(weight_text) if has_weight else 1.0
        except ValueError:
            raise ValueError(f"bad weight {weight_text!r} in {text!r}; {_HELP}") from None
        if not math.isfinite(weight):
            raise ValueError(f"weight {weight_text.strip()!r} in {text!r} is not a finite number")
        if weight < 0:
            raise ValueError(f"negative weight in {text!r}; weights must be 0 or more")
        index = multistyle_index(token)
        totals[index] = totals.get(index, 0.0) + weight
    total = sum(totals.values())
    if not math.isfinite(total):
        raise ValueError(f"the weights in {text!r} are too large; use weights like 0.5")
    if total <= 0:
        raise ValueError(f"the weights in {text!r} add up to 0; give at least one positive weight")
    return tuple(sorted((index, weight / total) for index, weight in totals.items() if weight > 0))
