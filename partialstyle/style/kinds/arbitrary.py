"""Any picture's style (Ghiasi et al.'s arbitrary network): `arbitrary:<picture file>`.
The picture becomes a style vector once; regions' looks share one pass, a region's strength
moves its vector towards the frame's own, and morphs mix the vectors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from partialstyle.errors import PartialStyleError
from partialstyle.style.kinds.base import FileStyles, Look, Networks, StylePass
from partialstyle.style.spec import StyleSpec

if TYPE_CHECKING:
    import torch

_MODEL = "arbitrary"


class ArbitraryKind(FileStyles):
    name = "arbitrary"
    syntax = "arbitrary:<picture file>"
    restyles = True
    shares_pass = True
    strength_in_conditioning = True

    def label(self, spec: StyleSpec) -> str:
        return f"Picture: {Path(spec.source).name}"

    def installed(self) -> tuple[str, ...]:
        return ()  # every picture is a style; the user names one

    def listing(self) -> tuple[str, ...]:
        return ("arbitrary:<picture>  (any picture's style)",)

    def problem(self, spec: StyleSpec) -> str | None:
        from partialstyle.io import check_picture

        try:
            check_picture(Path(spec.source).expanduser(), "style picture", reduce=True)
        except PartialStyleError as error:
            return str(error)
        return None

    def picture_spec(self, picture: str) -> str:
        return f"{self.name}:{picture}"

    def sample(self, folder: Path, picture: str) -> tuple[str, str]:
        return self.picture_spec(picture), ""

    def load(self, spec: StyleSpec, networks: Networks, device: torch.device) -> None:
        picture_vector(spec.source, networks, device)

    def conditioning(
        self, spec: StyleSpec, strength: float, image: torch.Tensor, networks: Networks
    ) -> Look:
        import torch

        vector = picture_vector(spec.source, networks, image.device)
        if strength < 1.0:
            vector = torch.lerp(frame_vector(image, networks), vector, strength)
        return Look(self, vector)

    def interpolate(self, old: Look, old_share: float, new: Look, new_share: float) -> Look:
        from partialstyle.style.kinds.spatial import mixed

        return mixed(self, old, old_share, new, new_share)

    def forward(self, run: StylePass, networks: Networks) -> torch.Tensor:
        from partialstyle.style.kinds.spatial import conditioned_pass

        batch, conditioning, region_masks, share = conditioned_pass(run)
        network = networks.model(_MODEL, run.image.device)
        return network.stylize(batch.float(), conditioning.float(), region_masks, share)[0]

    def forward_layer(
        self, run: StylePass, networks: Networks, shown_with: list[torch.Tensor]
    ) -> torch.Tensor | None:
        from partialstyle.style.kinds.spatial import conditioned_pass

        batch, conditioning, region_masks, share = conditioned_pass(run)
        network = networks.model(_MODEL, run.image.device)
        batch, conditioning = batch.float(), conditioning.float()
        layer = network.layer(batch, conditioning, region_masks, share, shown_with)
        return None if layer is None else layer[0]


def picture_vector(path: str, networks: Networks, device: torch.device) -> torch.Tensor:
    """A picture's style vector, computed once per picture file version and device."""
    from partialstyle.io import read_image

    picture = Path(path).expanduser()
    if not picture.is_file():  # read_image says why (missing, a folder)
        read_image(picture, "style picture")
    key = (_MODEL, str(picture.resolve()), picture.stat().st_mtime_ns, str(device))

    def compute() -> torch.Tensor:
        import torch

        pixels = torch.from_numpy(read_image(picture, "style picture", reduce=True)[..., :3].copy())
        return networks.model(_MODEL, device).style_vector(pixels)

    return networks.remember(key, compute)


def frame_vector(image: torch.Tensor, networks: Networks) -> torch.Tensor:
    """The frame's own style vector: strength 0 of an arbitrary style means this one."""
    import torch

    network = networks.model(_MODEL, image.device)
    pixels = image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
    return network.style_vector(pixels)


ARBITRARY = ArbitraryKind()
