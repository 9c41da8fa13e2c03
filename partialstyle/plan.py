"""The style plan: which style each region of the frame gets, and how strongly."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from partialstyle.style.spec import StyleSpec

# The two regions every plan has; `person:<n>` and `class:<coco name>` regions are optional.
REGIONS = ("background", "person")
_PERSON_NUMBER = re.compile(r"person:(\d+)$")
MAX_PEOPLE = 16


@dataclass(frozen=True)
class RegionStyle:
    """A region's look: the style, how much of it (0 keeps the original), and whether to keep
    the original's colors (stylized luminance only)."""

    style: StyleSpec = field(default_factory=StyleSpec)
    strength: float = 1.0
    preserve_colors: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {self.strength}")

    @property
    def is_identity(self) -> bool:
        """True when this region is left exactly as it was."""
        return self.style.is_none or self.strength == 0.0


@dataclass(frozen=True)
class StylePlan:
    """Maps regions to their `RegionStyle`.

    Regions: "background" (everything no other region claims), "person" (all people),
    "person:<n>" (the n-th person from the left, kept stable by tracking; overrides "person")
    and "class:<coco name>" (objects of that class; needs an instance segmenter).
    """

    person: RegionStyle = field(default_factory=RegionStyle)
    background: RegionStyle = field(default_factory=RegionStyle)
    people: tuple[tuple[int, RegionStyle], ...] = ()
    classes: tuple[tuple[str, RegionStyle], ...] = ()

    @classmethod
    def from_specs(
        cls,
        person: str = "none",
        background: str = "none",
        strength: float = 1.0,
        preserve_colors: bool = False,
    ) -> StylePlan:
        """Build a plan from spec strings, with one strength and color setting for both."""
        return cls(
            person=RegionStyle(StyleSpec.parse(person), strength, preserve_colors),
            background=RegionStyle(StyleSpec.parse(background), strength, preserve_colors),
        )

    @classmethod
    def from_regions(cls, regions: dict[str, RegionStyle]) -> StylePlan:
        """Build a plan from region names ("person:2", "class:cat", ...) and their styles."""
        base = {name: regions[name] for name in REGIONS if name in regions}
        people, classes = [], []
        for name, style in regions.items():
            if name in REGIONS:
                continue
            kind, number = region_kind(name)
            if kind == "person":
                people.append((number, style))
            else:
                classes.append((name.partition(":")[2], style))
        return cls(**base, people=tuple(sorted(people)), classes=tuple(sorted(classes)))

    def regions(self) -> dict[str, RegionStyle]:
        """Every region of the plan by name, in painting order (later ones on top)."""
        result = {"background": self.background}
        result.update({f"class:{name}": style for name, style in self.classes})
        result["person"] = self.person
        result.update({f"person:{number}": style for number, style in self.people})
        return result

    def style_of_person(self, number: int) -> RegionStyle:
        """The n-th person's style: their own region's if the plan has one, else "person"."""
        return dict(self.people).get(number, self.person)

    @property
    def needs_instances(self) -> bool:
        """People told apart, or objects other than people, need more than one person mask."""
        return bool(self.classes) or any(style != self.person for _, style in self.people)

    @property
    def needs_mask(self) -> bool:
        """A mask matters only when the regions differ; one style everywhere needs no segmenter."""
        return self.person != self.background or self.needs_instances


@dataclass(frozen=True)
class RegionRequest:
    """A region's look as the user wrote it, in the CLI's options or the OBS filter's settings:
    the region's name, its style spec text, strength and color setting, and `source`, what
    the user set the style with, which its errors name ("person 2 style"; empty: unnamed)."""

    region: str
    style: str
    strength: float = 1.0
    preserve_colors: bool = False
    source: str = ""


def plan_from_requests(requests: Iterable[RegionRequest]) -> StylePlan:
    """The plan the CLI and the OBS filter build from what their users wrote; a later request
    for the same region wins. ValueError names the source of a style that does not parse."""
    regions: dict[str, RegionStyle] = {}
    for request in requests:
        try:
            style = StyleSpec.parse(request.style)
        except ValueError as error:
            if not request.source:
                raise
            raise ValueError(f"{request.source}: {error}") from None
        regions[request.region] = RegionStyle(style, request.strength, request.preserve_colors)
    return StylePlan.from_regions(regions)


def region_kind(name: str) -> tuple[str, int]:
    """Check a region name; ("person", n) for person:<n>, ("class", 0) for class:<name>."""
    from partialstyle.segment.classes import COCO_CLASSES

    found = _PERSON_NUMBER.match(name)
    if found:
        number = int(found.group(1))
        if not 1 <= number <= MAX_PEOPLE:
            raise ValueError(f"region {name!r}: people are numbered 1 to {MAX_PEOPLE}")
        return "person", number
    if name.startswith("class:"):
        coco_name = name.partition(":")[2]
        if coco_name not in COCO_CLASSES:
            raise ValueError(
                f"region {name!r}: {coco_name!r} is not a COCO class (e.g. class:cat, class:dog)"
            )
        if coco_name == "person":
            raise ValueError("use the region person (or person:<n>), not class:person")
        return "class", 0
    raise ValueError(
        f"unknown region {name!r}; use person, person:<n>, class:<coco name> or background"
    )
