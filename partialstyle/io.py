"""Reading and writing images for the command line (RGB / RGBA numpy arrays)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from partialstyle.errors import PartialStyleError

WRITABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (or RGBA when it has alpha); gray becomes RGB."""
    if not path.is_file():
        raise PartialStyleError(f"input image {path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise PartialStyleError(f"cannot read {path} as an image (is it a PNG, JPEG or similar?)")
    if image.dtype != np.uint8:
        image = (
            (image / 257).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_output_path(path: Path) -> None:
    """Fail before any work when the output cannot be written."""
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise PartialStyleError(
            f"cannot write {path.name}: use one of {', '.join(WRITABLE_SUFFIXES)}"
        )
    if not path.parent.exists():
        raise PartialStyleError(f"output folder {path.parent} does not exist")


def write_image(path: Path, image: np.ndarray) -> None:
    """Write RGB, RGBA or gray uint8 to path (format from the suffix)."""
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise PartialStyleError(f"could not write {path}")
