"""What a picture file declares before it is decoded: its size and its EXIF orientation.

Reading these first lets a command refuse a decompression bomb (a small file that declares
an enormous picture) before any memory is spent on it, and turn a phone photo upright the way
every viewer shows it. PNG and JPEG headers are read here directly; other formats through
Pillow, which reads only their header on open.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_START = b"\xff\xd8"
# JPEG start-of-frame markers (every coding process; not DHT 0xC4, JPG 0xC8, DAC 0xCC).
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class PictureHeader:
    """The stored size of a picture and its EXIF orientation (1: stored upright; 2-8: turned
    or mirrored, 5-8 with width and height swapped when shown)."""

    width: int
    height: int
    orientation: int = 1

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) as viewers show the picture."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, which the format puts first."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _jpeg_segments(data: bytes):
    """(marker, payload) of each JPEG marker segment up to the first scan."""
    position = len(_JPEG_START)
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        yield marker, data[position + 4 : position + 2 + length]
        position += 2 + length


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment."""
    if not data.startswith(_JPEG_START):
        return None
    for marker, payload in _jpeg_segments(data):
        if marker in _JPEG_FRAME_MARKERS and len(payload) >= 5:
            return int.from_bytes(payload[3:5], "big"), int.from_bytes(payload[1:3], "big")
    return None


def exif_orientation(exif: bytes) -> int:
    """The orientation tag (1-8) of TIFF-structured EXIF data; 1 when absent or damaged."""
    if len(exif) < 8 or exif[:2] not in (b"II", b"MM"):
        return 1
    order = "little" if exif[:2] == b"II" else "big"
    ifd = int.from_bytes(exif[4:8], order)
    if ifd + 2 > len(exif):
        return 1
    count = int.from_bytes(exif[ifd : ifd + 2], order)
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(exif) - 11), 12):
        if int.from_bytes(exif[entry : entry + 2], order) == _EXIF_ORIENTATION_TAG:
            value = int.from_bytes(exif[entry + 8 : entry + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation of a JPEG (its APP1 "Exif" segment); 1 when it has none."""
    for marker, payload in _jpeg_segments(data):
        if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
            return exif_orientation(payload[6:])
    return 1


def _pillow_header(data: bytes) -> PictureHeader | None:
    """Other formats: Pillow reads the header on open and decodes nothing until asked."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: we judge the size
            with Image.open(io.BytesIO(data)) as picture:
                orientation = picture.getexif().get(_EXIF_ORIENTATION_TAG, 1)
                width, height = picture.size
    except Image.DecompressionBombError:
        return PictureHeader(1 << 16, 1 << 16)  # over 179 million pixels: over every limit
    except Exception:  # noqa: BLE001 (not a picture Pillow knows; OpenCV may still read it)
        return None
    return PictureHeader(width, height, orientation if orientation in range(1, 9) else 1)


def read_header(data: bytes) -> PictureHeader | None:
    """The size and orientation a picture file declares; None when it cannot be told."""
    size = png_size(data)
    if size is not None:
        return PictureHeader(*size)  # an orientation in PNG's rare eXIf chunk is not read
    size = jpeg_size(data)
    if size is not None:
        return PictureHeader(*size, jpeg_orientation(data))
    return _pillow_header(data)


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels turned as EXIF orientation 1-8 says viewers show them."""
    if orientation in (2, 4, 5, 7):  # mirrored ones: mirror first, then turn like 1, 3, 6, 8
        image = image[:, ::-1]
        orientation = {2: 1, 4: 3, 5: 8, 7: 6}[orientation]
    turns = {1: 0, 3: 2, 6: 3, 8: 1}[orientation]  # counter-clockwise quarter turns
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image
