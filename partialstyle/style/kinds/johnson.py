"""Johnson et al.'s feed-forward networks, one style per network file: `johnson:candy` (in
models/johnson/) or `johnson:<file.pth>`. Regions with the same network share one run, on
the crop they cover; a morph between two networks mixes their pixels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from partialstyle.style.kinds.base import FileStyles, Look, Networks, StylePass
from partialstyle.style.spec import StyleSpec
from partialstyle.weights import files

if TYPE_CHECKING:
    import torch

# A region whose bounding box covers less than this share of the frame runs on a crop.
_CROP_BELOW = 0.6
_CROP_MARGIN = 16
# Mask values above this count as covered when finding a region's bounding box.
_COVERED = 0.01


class JohnsonKind(FileStyles):
    name = "johnson"
    syntax = "johnson:<name or .pth file>"
    restyles = True
    shares_pass = False
    strength_in_conditioning = False

    def label(self, spec: StyleSpec) -> str:
        name = Path(spec.source).name
        return f"{Path(name).stem} (Johnson network)" if name == spec.source else f"Johnson: {name}"

    def installed(self) -> tuple[str, ...]:
        return tuple(f"{self.name}:{name}" for name in files.johnson_names())

    def listing(self) -> tuple[str, ...]:
        return (
            *self.installed(),
            "johnson:<file.pth>  (more with `partialstyle models fetch johnson`)",
        )

    def problem(self, spec: StyleSpec) -> str | None:
        source = spec.source
        if files.is_network_file(source):
            network = Path(source).expanduser()
            return None if network.is_file() else f"Johnson network {network} does not exist"
        installed = files.johnson_names()
        if source in installed:
            return None
        return (
            f"no Johnson network {source!r} in {files.models_dir() / 'johnson'} "
            f"(installed: {', '.join(installed) or 'none'}); "
            "run `partialstyle models fetch johnson`"
        )

    def picture_spec(self, picture: str) -> None:
        return None

    def sample(self, folder: Path, picture: str) -> tuple[str, str]:
        """An installed network, or else one of the same architecture with random weights
        (the arithmetic, and so the time, is the same)."""
        installed = files.johnson_names()
        if installed:
            return f"{self.name}:{installed[0]}", ""
        import torch

        from partialstyle.style.johnson import TransformerNet

        network = folder / "random-weights.pth"
        torch.save(TransformerNet().state_dict(), network)
        return f"{self.name}:{network}", "random weights (timing only)"

    def load(self, spec: StyleSpec, networks: Networks, device: torch.device) -> None:
        networks.johnson(spec.source, device)

    def conditioning(
        self, spec: StyleSpec, strength: float, image: torch.Tensor, networks: Networks
    ) -> Look:
        return Look(self, source=spec.source)

    def interpolate(self, old: Look, old_share: float, new: Look, new_share: float) -> None:
        return None

    def forward(self, run: StylePass, networks: Networks) -> torch.Tensor:
        """The looks' network over the frame, or over the crop their regions cover."""
        image = run.image
        network = networks.johnson(run.looks[0].source, image.device)
        height, width = image.shape[-2:]
        box = _covered_box(run.masks, height, width) if run.masks else None
        if box is None:
            return network(image[None])[0].float()
        top, bottom, left, right = box
        styled = image.clone()
        styled[:, top:bottom, left:right] = network(image[None, :, top:bottom, left:right])[0]
        return styled

    def forward_layer(
        self, run: StylePass, networks: Networks, shown_with: list[torch.Tensor]
    ) -> torch.Tensor | None:
        return None  # its image is premultiplied apart


def _covered_box(
    masks: tuple[torch.Tensor, ...], height: int, width: int
) -> tuple[int, int, int, int] | None:
    """The bounding box (with a margin) of where the masks show, if it is worth cropping."""
    import torch

    covered = torch.stack(masks).amax(0) > _COVERED
    rows = torch.nonzero(covered.any(1)).flatten()
    columns = torch.nonzero(covered.any(0)).flatten()
    if len(rows) == 0:
        return None
    top = max(0, int(rows[0]) - _CROP_MARGIN)
    bottom = min(height, int(rows[-1]) + 1 + _CROP_MARGIN)
    left = max(0, int(columns[0]) - _CROP_MARGIN)
    right = min(width, int(columns[-1]) + 1 + _CROP_MARGIN)
    if (bottom - top) * (right - left) >= _CROP_BELOW * height * width:
        return None
    return top, bottom, left, right


JOHNSON = JohnsonKind()
