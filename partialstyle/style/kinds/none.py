"""No style: the region keeps the frame as it is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from partialstyle.style.kinds.base import Look, Networks, StylePass
from partialstyle.style.spec import StyleSpec

if TYPE_CHECKING:
    import torch


class NoStyle:
    name = "none"
    syntax = "none"
    restyles = False
    shares_pass = True
    strength_in_conditioning = False

    def parse(self, body: str, text: str) -> StyleSpec:
        from partialstyle.style.kinds import spec_help

        raise ValueError(f"unknown style kind {self.name!r} in {text!r}; {spec_help()}")

    def text(self, spec: StyleSpec) -> str:
        return self.name

    def label(self, spec: StyleSpec) -> str:
        return "none (unstyled)"

    def tile_label(self, spec: StyleSpec) -> str:
        return self.name

    def installed(self) -> tuple[str, ...]:
        return (self.name,)

    def listing(self) -> tuple[str, ...]:
        return (self.name,)

    def problem(self, spec: StyleSpec) -> str | None:
        return None

    def picture_spec(self, picture: str) -> None:
        return None

    def sample(self, folder: Path, picture: str) -> None:
        return None

    def load(self, spec: StyleSpec, networks: Networks, device: torch.device) -> None:
        return None

    def conditioning(
        self, spec: StyleSpec, strength: float, image: torch.Tensor, networks: Networks
    ) -> Look:
        return Look(self)

    def interpolate(self, old: Look, old_share: float, new: Look, new_share: float) -> None:
        return None

    def forward(self, run: StylePass, networks: Networks) -> torch.Tensor:
        return run.image

    def forward_layer(
        self, run: StylePass, networks: Networks, shown_with: list[torch.Tensor]
    ) -> torch.Tensor | None:
        return None  # its image is premultiplied apart


NONE = NoStyle()
