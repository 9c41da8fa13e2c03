"""Frame checks and conversions between numpy frames and torch images."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from partialstyle.frame_limits import frame_size_problem
from partialstyle.style import fused_norm


def check_frame(frame: object) -> np.ndarray:
    """Accept uint8 H×W×3 (RGB) or H×W×4 (RGBA) from 32×32 up to 4K; else a clear ValueError.

    A read-only array comes back as a writable copy, so torch can wrap it without a warning.
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"a frame must be H×W×3 (RGB) or H×W×4 (RGBA), got shape {frame.shape}")
    height, width = frame.shape[:2]
    problem = frame_size_problem(width, height)
    if problem is not None:
        raise ValueError(problem)
    if not frame.flags.writeable:  # torch.from_numpy warns on read-only memory; never write it
        frame = frame.copy()
    return frame


def processing_size(height: int, width: int, process_height: int | None) -> tuple[int, int]:
    """The (h, w) the networks work at: the frame scaled to process_height, never upscaled."""
    if process_height is None or process_height >= height:
        return height, width
    return process_height, max(1, round(width * process_height / height))


def to_image(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 [H,W,3] → float [3,H,W] in [0,1] (on the CPU a view of float pixels, made in one
    pass of the compiled kernel: the cast and division are a millisecond from an RGBA frame)."""
    kernels = _pixel_kernels(rgb)
    if kernels is not None:
        return kernels.pixels_to_image(rgb)
    return rgb.permute(2, 0, 1).float().div_(255.0)


def _pixel_kernels(rgb: torch.Tensor):
    """The compiled frame kernels for uint8 CPU pixels, else None."""
    if rgb.device.type != "cpu" or rgb.dtype != torch.uint8 or rgb.dim() != 3:
        return None
    return fused_norm.kernels()


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """float [3,H,W] in [0,1] → uint8 [H,W,3], rounded, contiguous (the conversion writes
    the pixel-interleaved layout directly, so handing it on needs no second copy)."""
    scaled = image.mul(255.0).add_(0.5).clamp_(0.0, 255.0).permute(1, 2, 0)
    return torch.empty(scaled.shape, dtype=torch.uint8, device=image.device).copy_(scaled)


def whole_pixels(rgb: torch.Tensor) -> torch.Tensor:
    """The colour channels of an RGBA frame (an H×W×3 view of H×W×4 memory) as the whole
    H×W×4 pixels, else `rgb` itself. Resizes run on whole pixels without first copying the
    frame into a dense H×W×3; callers drop the fourth channel from their (small) result."""
    height, width, channels = rgb.shape
    whole = rgb.storage_offset() + 4 * height * width <= rgb.untyped_storage().nbytes()
    if channels == 3 and rgb.dtype == torch.uint8 and rgb.stride() == (4 * width, 4, 1) and whole:
        return rgb.as_strided((height, width, 4), (4 * width, 4, 1))
    return rgb


def shrink_uint8(rgb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [H,W,3] → float [3,h,w] in [0,1] at a smaller size, antialiased: what
    `resize_image(to_image(rgb), size)` gives, within rounding (one level), straight from the
    uint8 pixels. torch's uint8 antialiased resize is vectorised on the CPU; a 3840×2160
    frame scales to 640×360 in a twentieth of the float path's time."""
    pixels = whole_pixels(rgb).permute(2, 0, 1)[None]  # channels-last view: no copy
    small = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)
    return to_image(small[0].permute(1, 2, 0)[..., :3])


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize [C,H,W]: antialiased when shrinking, bilinear when growing."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] < image.shape[-2]
    return F.interpolate(
        image[None], size=size, mode="bilinear", align_corners=False, antialias=shrinking
    )[0]
