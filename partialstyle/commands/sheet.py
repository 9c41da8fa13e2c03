"""A contact sheet: every available style applied to one photo, labelled with id and name."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from partialstyle.config import PipelineConfig
from partialstyle.frames import resize_image, to_image, to_uint8
from partialstyle.pipeline import Pipeline
from partialstyle.plan import StylePlan
from partialstyle.style.kinds import picture_spec, restyling_specs
from partialstyle.style.spec import StyleSpec

_LABEL_HEIGHT = 22
_GAP = 6


def sheet_styles(pictures: list[str]) -> list[tuple[str, str]]:
    """(label, spec) of every style to show: each kind's installed styles (multistyle,
    Johnson networks), then the given pictures."""
    styles = []
    for text in [*restyling_specs(), *(picture_spec(picture) for picture in pictures)]:
        spec = StyleSpec.parse(text)
        styles.append((spec.style_kind.tile_label(spec), text))
    return styles


@torch.inference_mode()
def contact_sheet(
    photo: np.ndarray,
    device: torch.device,
    tile: int = 192,
    columns: int = 7,
    pictures: list[str] | None = None,
) -> np.ndarray:
    """uint8 RGB sheet: the original first, then each style, labelled."""
    image = to_image(torch.from_numpy(np.ascontiguousarray(photo[..., :3])))
    height, width = image.shape[-2:]
    scale = tile / max(height, width)
    size = (max(32, round(height * scale)), max(32, round(width * scale)))
    small = to_uint8(resize_image(image, size)).numpy()
    tiles = [("original", small)]
    config = PipelineConfig(device=str(device))
    for label, spec in sheet_styles(pictures or []):
        tiles.append((label, Pipeline(config, StylePlan.from_specs(spec, spec)).process(small)))
    rows = -(-len(tiles) // columns)
    cell_h, cell_w = size[0] + _LABEL_HEIGHT, size[1]
    sheet = np.full(
        (rows * (cell_h + _GAP) + _GAP, columns * (cell_w + _GAP) + _GAP, 3), 255, np.uint8
    )
    for position, (label, tile_image) in enumerate(tiles):
        top = _GAP + (position // columns) * (cell_h + _GAP)
        left = _GAP + (position % columns) * (cell_w + _GAP)
        sheet[top : top + size[0], left : left + size[1]] = tile_image
        cv2.putText(
            sheet,
            label[:28],
            (left + 2, top + size[0] + 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (20, 20, 20),
            1,
            cv2.LINE_AA,
        )
    return sheet
