"""MediaPipe's image-to-tensor resize, reproduced bit for bit with torch gathers.

MediaPipe stretches the whole frame onto the model's input with OpenCV 4's `warpPerspective`
(bilinear, zero border) on the uint8 image, then scales to [0, 1]. The segmentation model is
sensitive to this step: a half-pixel resize such as `F.interpolate` moves masks by up to 0.1.
OpenCV samples source position (x * W / w, y * H / h) in 1/32 pixel steps and blends the four
neighbours with integer weights, so the whole step is a fixed table of indices and weights per
(frame size, tensor size). On the CPU the step is OpenCV's `remap` with the fixed-point maps
`warpPerspective` would compute for every frame, made once per size instead (2.5 times faster
than `warpPerspective`, which is four times faster than the gathers); the gather tables serve
other devices. All three give the same levels bit for bit.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
from torch import Tensor

from partialstyle.frames import whole_pixels

_SUBPIXEL_BITS = 5  # OpenCV's INTER_BITS: positions are rounded to 1/32 pixel
_SUBPIXELS = 1 << _SUBPIXEL_BITS
_WEIGHT_BITS = 15  # OpenCV's INTER_REMAP_COEF_BITS: the four weights sum to 2**15
_BLOCK = 32  # OpenCV's BLOCK_SZ: warpPerspective computes coordinates in tiles


def stretch_matrix(image_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The image -> tensor 3x3 homography MediaPipe passes to warpPerspective: the image's
    corners onto the tensor's, by getPerspectiveTransform."""
    (img_h, img_w), (h, w) = image_size, size
    src = np.float32([[0, img_h], [0, 0], [img_w, 0], [img_w, img_h]])
    dst = np.float32([[0, h], [0, 0], [w, 0], [w, h]])
    return cv2.getPerspectiveTransform(src, dst)


def inverse_stretch_matrix(image_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The tensor -> image 3x3 homography that OpenCV derives for MediaPipe's full-frame stretch.

    OpenCV inverts MediaPipe's matrix. Its off-diagonal entries are not always exactly zero, and
    at exact half-1/32 ties those tiny values decide the rounding, so the inverse is derived the
    same way.
    """
    (img_h, img_w), (h, w) = image_size, size
    ok, inverse = cv2.invert(stretch_matrix(image_size, size), flags=cv2.DECOMP_LU)
    if not ok:
        raise ValueError(f"cannot map a {img_w}x{img_h} image onto a {w}x{h} tensor")
    return inverse


def fixed_point_source_positions(m: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Source positions of every tensor pixel in 1/32 pixels, as int (X, Y) arrays of shape (h, w).

    Follows warpPerspective's double arithmetic operation by operation, including the tiling of
    columns (the tile origin is added separately from the offset inside the tile), and rounds half
    to even like OpenCV's saturate_cast.
    """
    h, w = size
    tile_h = min(_BLOCK // 2, h)
    tile_w = min(_BLOCK * _BLOCK // tile_h, w)
    x = np.arange(w, dtype=np.float64)
    x_tile = np.floor_divide(x, tile_w) * tile_w
    x_in_tile = x - x_tile
    y = np.arange(h, dtype=np.float64)[:, None]
    m = m.reshape(-1).astype(np.float64)
    x0 = m[0] * x_tile + m[1] * y + m[2]
    y0 = m[3] * x_tile + m[4] * y + m[5]
    w0 = m[6] * x_tile + m[7] * y + m[8]
    denom = w0 + m[6] * x_in_tile
    with np.errstate(divide="ignore"):
        scale = np.where(denom != 0, _SUBPIXELS / np.where(denom != 0, denom, 1.0), 0.0)
    limits = (float(np.iinfo(np.int32).min), float(np.iinfo(np.int32).max))
    fx = np.clip((x0 + m[0] * x_in_tile) * scale, *limits)
    fy = np.clip((y0 + m[3] * x_in_tile) * scale, *limits)
    return np.rint(fx).astype(np.int64), np.rint(fy).astype(np.int64)


def bilinear_taps(
    image_size: tuple[int, int], size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices (4, h, w) and integer weights (4, h, w) of the four neighbours.

    Neighbours outside the image get weight 0 (OpenCV's zero border) and a harmless index 0. The
    weights are OpenCV's fixed-point bilinear coefficients and sum to 2**15 for inside pixels.
    """
    img_h, img_w = image_size
    big_x, big_y = fixed_point_source_positions(inverse_stretch_matrix(image_size, size), size)
    ix, fx = big_x >> _SUBPIXEL_BITS, big_x & (_SUBPIXELS - 1)
    iy, fy = big_y >> _SUBPIXEL_BITS, big_y & (_SUBPIXELS - 1)
    scale = (1 << _WEIGHT_BITS) // (_SUBPIXELS * _SUBPIXELS)
    indices, weights = [], []
    for dy, wy in ((0, _SUBPIXELS - fy), (1, fy)):
        for dx, wx in ((0, _SUBPIXELS - fx), (1, fx)):
            row, col = iy + dy, ix + dx
            inside = (row >= 0) & (row < img_h) & (col >= 0) & (col < img_w)
            indices.append(np.where(inside, row * img_w + col, 0))
            weights.append(np.where(inside, wy * wx * scale, 0))
    return np.stack(indices), np.stack(weights)


@lru_cache(maxsize=8)
def _cached_taps(
    image_size: tuple[int, int], size: tuple[int, int], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Tables to gather from the flattened H*W*3 image: indices (4*h*w*3,), weights (4,h,w,1).

    The weights are float32: every product and partial sum is an integer below 2**24, so float32
    arithmetic is exact and faster than int32 here.
    """
    indices, weights = bilinear_taps(image_size, size)
    channel_indices = indices[..., None] * 3 + np.arange(3)
    return (
        torch.from_numpy(channel_indices.reshape(-1).astype(np.int32)).to(device),
        torch.from_numpy(weights.astype(np.float32))[..., None].to(device),
    )


def mediapipe_input(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Stretch an H x W x 3 uint8 RGB image to 1 x 3 x h x w float32 in [0, 1], as MediaPipe does.

    `size` is (h, w). The result is on the image's device. Tables are cached per (image size, size,
    device), since video frames repeat their size.
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an H x W x 3 uint8 RGB image, got {image.dtype} "
            f"of shape {tuple(image.shape)}"
        )
    img_h, img_w = int(image.shape[0]), int(image.shape[1])
    h, w = int(size[0]), int(size[1])
    if img_h == 0 or img_w == 0 or h < 1 or w < 1:
        raise ValueError(f"cannot resize a {img_h}x{img_w} image to {h}x{w}")
    if image.device.type == "cpu":
        # Contiguous planes, what onnxruntime takes (it would copy a channels-last view).
        planes = torch.from_numpy(_remapped_planes(image, (h, w))).to(torch.float32)
    else:
        # Permuting h x w x 3 gives a channels-last 1 x 3 x h x w tensor, the layout the model
        # prefers.
        planes = _gathered(image, (h, w)).permute(2, 0, 1)
    scale = torch.tensor(1.0 / 255.0, dtype=torch.float32, device=image.device)
    return planes.mul_(scale).unsqueeze(0)


@lru_cache(maxsize=8)
def _remap_maps(image_size: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """OpenCV's fixed-point maps for the stretch, as warpPerspective builds them tile by tile:
    whole source pixels (h, w, 2) int16, and the 1/32-pixel fractions as an index into its
    bilinear weight table, (h, w) uint16 (y fraction * 32 + x fraction)."""
    big_x, big_y = fixed_point_source_positions(inverse_stretch_matrix(image_size, size), size)
    short = np.iinfo(np.int16)
    pixels = np.stack([big_x >> _SUBPIXEL_BITS, big_y >> _SUBPIXEL_BITS], axis=-1)
    fractions = (big_y & (_SUBPIXELS - 1)) * _SUBPIXELS + (big_x & (_SUBPIXELS - 1))
    return np.clip(pixels, short.min, short.max).astype(np.int16), fractions.astype(np.uint16)


def _remapped_planes(image: Tensor, size: tuple[int, int]) -> np.ndarray:
    """The stretched levels as contiguous 3 x h x w uint8 planes, by OpenCV (CPU tensors)."""
    pixels, fractions = _remap_maps((int(image.shape[0]), int(image.shape[1])), size)
    levels = cv2.remap(
        np.ascontiguousarray(whole_pixels(image).numpy()),  # an RGBA frame is not copied
        pixels,
        fractions,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return np.stack(cv2.split(levels.reshape(*size, -1))[:3])


def _gathered(image: Tensor, size: tuple[int, int]) -> Tensor:
    """The stretched h x w x 3 levels as float32, by gathering with OpenCV's tables (any device)."""
    h, w = size
    indices, weights = _cached_taps((int(image.shape[0]), int(image.shape[1])), size, image.device)
    taps = image.reshape(-1).index_select(0, indices).view(4, h, w, 3).to(torch.float32)
    total = (taps * weights).sum(0)
    # OpenCV's fixed-point rounding, (total + 2**14) >> 15, done exactly in float32.
    half, unit = float(1 << (_WEIGHT_BITS - 1)), 1.0 / (1 << _WEIGHT_BITS)
    return torch.floor((total + half) * unit)
