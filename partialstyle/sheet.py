"""A contact sheet: every available style applied to one photo, labelled with id and name."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from partialstyle.frames import resize_image, to_image, to_uint8
from partialstyle.models_cache import load_model
from partialstyle.style.names import MULTISTYLE_NAMES, multistyle_label

_LABEL_HEIGHT = 22
_GAP = 6


@torch.inference_mode()
def contact_sheet(
    photo: np.ndarray, device: torch.device, tile: int = 192, columns: int = 7
) -> np.ndarray:
    """uint8 RGB sheet: the original first, then each multistyle style in id order."""
    image = to_image(torch.from_numpy(np.ascontiguousarray(photo[..., :3])).to(device))
    height, width = image.shape[-2:]
    scale = tile / max(height, width)
    size = (max(8, round(height * scale)), max(8, round(width * scale)))
    small = resize_image(image, size)
    network = load_model("multistyle26", device)
    tiles = [("original", small)]
    for index in range(len(MULTISTYLE_NAMES)):
        weights = torch.zeros(1, len(MULTISTYLE_NAMES), device=device)
        weights[0, index] = 1.0
        tiles.append((multistyle_label(index), network(small[None], weights)[0]))
    rows = -(-len(tiles) // columns)
    cell_h, cell_w = size[0] + _LABEL_HEIGHT, size[1]
    sheet = np.full(
        (rows * (cell_h + _GAP) + _GAP, columns * (cell_w + _GAP) + _GAP, 3), 255, np.uint8
    )
    for position, (label, tile_image) in enumerate(tiles):
        top = _GAP + (position // columns) * (cell_h + _GAP)
        left = _GAP + (position % columns) * (cell_w + _GAP)
        sheet[top : top + size[0], left : left + size[1]] = to_uint8(tile_image).cpu().numpy()
        cv2.putText(
            sheet,
            label,
            (left + 2, top + size[0] + 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (20, 20, 20),
            1,
            cv2.LINE_AA,
        )
    return sheet
