"""The style plan: which style each region of the frame gets, and how strongly."""

from __future__ import annotations

from dataclasses import dataclass, field

from partialstyle.style.spec import StyleSpec

# Regions in painting order: later regions claim their pixels from earlier ones.
REGIONS = ("background", "person")


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
    """Maps region names ("person", "background") to their `RegionStyle`."""

    person: RegionStyle = field(default_factory=RegionStyle)
    background: RegionStyle = field(default_factory=RegionStyle)

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

    def regions(self) -> dict[str, RegionStyle]:
        return {name: getattr(self, name) for name in REGIONS}

    @property
    def needs_mask(self) -> bool:
        """A mask matters only when the regions differ; one style everywhere needs no segmenter."""
        return self.person != self.background
