"""What every style kind provides, and the value types the style stage passes around.

Nothing here imports torch: the OBS dialog parses and lists styles through the kinds on
OBS's UI thread. The runtime methods import torch when they run.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from partialstyle.style.spec import StyleSpec

if TYPE_CHECKING:
    import torch

    from partialstyle.weights.model_cache import ModelCache


@dataclass(frozen=True, eq=False)
class Look:
    """What a region looks like now: its kind and how that kind's network is conditioned.

    conditioning: the kind's tensor (multistyle: 26 mixing weights, arbitrary: a style
    vector), None for kinds without one. source: the network file for kinds with one
    network per style (Johnson); looks with the same source run through one network.
    """

    kind: StyleKind
    conditioning: torch.Tensor | None = None
    source: str = ""


@dataclass(frozen=True, eq=False)
class StylePass:
    """One run of a kind's network: the frame [3,h,w] in [0,1], the looks it renders, where
    each will be shown ([h,w] each; None: everywhere), and whether to run in half
    precision."""

    image: torch.Tensor
    looks: tuple[Look, ...]
    masks: tuple[torch.Tensor, ...] | None
    half: bool


@dataclass
class Networks:
    """How a kind reaches its networks: the model cache the pipeline hands down, plus a
    small memo of values derived from files (a picture's style vector) that is as costly to
    recompute as a model is to load. Live video asks from two threads."""

    models: ModelCache
    capacity: int = 16
    _memo: OrderedDict[Hashable, Any] = field(default_factory=OrderedDict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def model(self, name: str, device: torch.device) -> Any:
        return self.models.load_model(name, device)

    def johnson(self, source: str, device: torch.device) -> Any:
        return self.models.load_johnson(source, device)

    def remember(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """`compute()`, kept for the `capacity` most recently used keys."""
        with self._lock:
            value = self._memo.get(key)
            if value is not None:
                self._memo.move_to_end(key)
                return value
        value = compute()  # outside the lock: the other thread need not wait for it
        with self._lock:
            self._memo[key] = value
            while len(self._memo) > self.capacity:
                self._memo.popitem(last=False)
        return value


class StyleKind(Protocol):
    """One kind of style: how users write it and how its network runs on regions.

    name: the spec prefix ("multistyle" in "multistyle:19"). syntax: how to write one, for
    error hints. restyles: False only for "none". shares_pass: looks of this kind for
    different regions run in one forward pass (spatially varying normalisation); otherwise
    looks with the same `source` share one run. strength_in_conditioning: a region's
    strength is applied to the conditioning (its pixels are then taken whole) rather than
    by mixing pixels with the original.
    """

    name: str
    syntax: str
    restyles: bool
    shares_pass: bool
    strength_in_conditioning: bool

    # -- specs (no torch) ------------------------------------------------------------------

    def parse(self, body: str, text: str) -> StyleSpec:
        """The spec for `kind:body` (`text` is the whole string, for error messages)."""

    def text(self, spec: StyleSpec) -> str:
        """The spec as users write it; parses back to the same spec."""

    def label(self, spec: StyleSpec) -> str:
        """How a style list in the OBS dialog shows the spec."""

    def tile_label(self, spec: StyleSpec) -> str:
        """The spec's caption on the contact sheet."""

    def installed(self) -> tuple[str, ...]:
        """Spec strings of this kind that work now without anything more from the user."""

    def listing(self) -> tuple[str, ...]:
        """Lines `partialstyle styles` prints for this kind."""

    def problem(self, spec: StyleSpec) -> str | None:
        """What stops the spec from working now (a missing file), or None."""

    def picture_spec(self, picture: str) -> str | None:
        """The spec that takes its style from the picture file, or None if this kind
        cannot use pictures."""

    def sample(self, folder: Path, picture: str) -> tuple[str, str] | None:
        """A spec to time this kind with on any machine (files may be written to `folder`;
        `picture` is a picture file), and a note on what it stands for ("": the real thing).
        None: nothing to time."""

    # -- running (torch) -------------------------------------------------------------------

    def load(self, spec: StyleSpec, networks: Networks, device: torch.device) -> None:
        """Load what the spec needs now rather than on the first frame."""

    def conditioning(
        self, spec: StyleSpec, strength: float, image: torch.Tensor, networks: Networks
    ) -> Look:
        """The look of `spec` at `strength` for the frame `image` [3,h,w]."""

    def interpolate(self, old: Look, old_share: float, new: Look, new_share: float) -> Look | None:
        """One look between two of this kind for a morph, or None when the two must be
        rendered separately and their pixels mixed."""

    def forward(self, run: StylePass, networks: Networks) -> torch.Tensor:
        """The stylized frame for one group of looks, [3,h,w] in [0,1]."""

    def forward_layer(
        self, run: StylePass, networks: Networks, shown_with: list[torch.Tensor]
    ) -> torch.Tensor | None:
        """The stylized frame already premultiplied by the weights it is shown with ([h,w]
        each, summed), as `compose.premultiplied_layer` makes it: [4,h,w], bit for bit, in
        the network's last pass. None where the kind's network cannot (the caller then
        premultiplies `forward`'s image)."""


class FileStyles:
    """Spec handling for kinds whose styles are files (a network, a picture): `kind:<file>`,
    the file in `StyleSpec.source`."""

    name: str

    def parse(self, body: str, text: str) -> StyleSpec:
        if not body.strip():
            raise ValueError(f"{self.name} style {text!r} needs a name or file after the colon")
        return StyleSpec(self.name, source=body.strip())

    def text(self, spec: StyleSpec) -> str:
        return f"{self.name}:{spec.source}"

    def tile_label(self, spec: StyleSpec) -> str:
        return f"{self.name}:{Path(spec.source).name}"
