"""The 26-style network (conditional instance normalisation): `multistyle:19`, blends like
`multistyle:3=0.5,12=0.5`. Regions' looks share one pass; morphs mix the weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from partialstyle.style.kinds.base import Look, Networks, StylePass
from partialstyle.style.names import MULTISTYLE_NAMES, NUM_MULTISTYLE, multistyle_label
from partialstyle.style.spec import StyleSpec

if TYPE_CHECKING:
    import torch

_MODEL = "multistyle26"


class MultiStyleKind:
    name = "multistyle"
    syntax = "multistyle:<id or name>, a blend like multistyle:3=0.5,12=0.5"
    restyles = True
    shares_pass = True
    strength_in_conditioning = False

    def parse(self, body: str, text: str) -> StyleSpec:
        return StyleSpec(self.name, _parse_weights(body, text))

    def text(self, spec: StyleSpec) -> str:
        if len(spec.weights) == 1:
            return f"multistyle:{spec.weights[0][0]}"
        return "multistyle:" + ",".join(f"{i}={w:g}" for i, w in spec.weights)

    def label(self, spec: StyleSpec) -> str:
        if len(spec.weights) == 1:
            index = spec.weights[0][0]
            return f"{MULTISTYLE_NAMES[index]} (multistyle:{index})"
        parts = ", ".join(
            f"{MULTISTYLE_NAMES[index]} {weight:.0%}" for index, weight in spec.weights
        )
        return f"Blend: {parts}"

    def tile_label(self, spec: StyleSpec) -> str:
        return multistyle_label(spec.weights[0][0]) if len(spec.weights) == 1 else self.text(spec)

    def installed(self) -> tuple[str, ...]:
        return tuple(f"multistyle:{index}" for index in range(NUM_MULTISTYLE))

    def listing(self) -> tuple[str, ...]:
        styles = tuple(
            f"multistyle:{index:<3} multistyle:{name}"
            for index, name in enumerate(MULTISTYLE_NAMES)
        )
        return (*styles, "blends: multistyle:3=0.5,12=0.5 (weights are normalised)")

    def problem(self, spec: StyleSpec) -> str | None:
        return None

    def picture_spec(self, picture: str) -> None:
        return None

    def sample(self, folder: Path, picture: str) -> tuple[str, str]:
        return "multistyle:19", ""

    def load(self, spec: StyleSpec, networks: Networks, device: torch.device) -> None:
        networks.model(_MODEL, device)

    def conditioning(
        self, spec: StyleSpec, strength: float, image: torch.Tensor, networks: Networks
    ) -> Look:
        import torch

        return Look(self, torch.tensor(spec.weight_vector(), device=image.device))

    def interpolate(self, old: Look, old_share: float, new: Look, new_share: float) -> Look:
        from partialstyle.style.kinds.spatial import mixed

        return mixed(self, old, old_share, new, new_share)

    def forward(self, run: StylePass, networks: Networks) -> torch.Tensor:
        from partialstyle.style.kinds.spatial import conditioned_pass

        batch, conditioning, region_masks, share = conditioned_pass(run)
        network = networks.model(_MODEL, run.image.device)
        return network(batch, conditioning.to(batch.dtype), region_masks, share)[0].float()

    def forward_layer(
        self, run: StylePass, networks: Networks, shown_with: list[torch.Tensor]
    ) -> torch.Tensor | None:
        from partialstyle.style.kinds.spatial import conditioned_pass
        from partialstyle.style.multistyle_fast import FastMultiStyleNet

        network = networks.model(_MODEL, run.image.device)
        if not isinstance(network, FastMultiStyleNet):
            return None
        batch, conditioning, region_masks, share = conditioned_pass(run)
        conditioning = conditioning.to(batch.dtype)
        return network(batch, conditioning, region_masks, share, shown_with)[0].float()


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


def _parse_weights(body: str, text: str) -> tuple[tuple[int, float], ...]:
    from partialstyle.style.kinds import spec_help

    totals: dict[int, float] = {}
    for part in body.split(","):
        token, has_weight, weight_text = part.partition("=")
        if not token.strip():
            raise ValueError(f"empty style in {text!r}; {spec_help()}")
        try:
            weight = float(weight_text) if has_weight else 1.0
        except ValueError:
            raise ValueError(f"bad weight {weight_text!r} in {text!r}; {spec_help()}") from None
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


MULTISTYLE = MultiStyleKind()
