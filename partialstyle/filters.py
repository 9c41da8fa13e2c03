"""Image filters shared by mask refinement and upsampling (torch, any device).

On the CPU, float32 box and Gaussian filters and resizes go through OpenCV, whose separable
filters and resizes are several times faster than the same arithmetic as torch operations
(they dominate mask refinement, which runs on every segmented live frame), and the guided
upsampling of one frame is one compiled kernel (frame_kernels.cpp); elsewhere they are torch
operations, which define what the fast forms must give.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from partialstyle.style import fused_norm


def _opencv_can_filter(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad


def _opencv_planes(
    x: torch.Tensor, filter_plane, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Apply `filter_plane(src, dst)` to every [H,W] plane of [N,C,H,W] x; `size` (h, w) is
    the planes' size out, by default the same."""
    x = x.contiguous()
    height, width = size or x.shape[-2:]
    out = x.new_empty((*x.shape[:-2], height, width))
    sources = x.reshape(-1, *x.shape[-2:]).numpy()
    targets = out.reshape(-1, height, width).numpy()
    for source, target in zip(sources, targets, strict=True):
        filter_plane(source, target)
    return out


def _opencv_resized(x: torch.Tensor, size: tuple[int, int], interpolation: int) -> torch.Tensor:
    height, width = size

    def resize(source: np.ndarray, target: np.ndarray) -> None:
        cv2.resize(source, (width, height), dst=target, interpolation=interpolation)

    return _opencv_planes(x, resize, size)


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [N,C,H,W] with half-pixel centres (`align_corners=False`), no
    antialiasing: for growing masks and filter coefficients."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    if _opencv_can_filter(x):
        return _opencv_resized(x, size, cv2.INTER_LINEAR)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def downsample_area(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average shrink of [N,C,H,W] (each output pixel the mean of the input it covers).

    OpenCV weighs partly covered pixels by their share where torch's "area" mode takes whole
    overlapping windows; at integer factors, the usual case, the two agree exactly."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    if _opencv_can_filter(x):
        return _opencv_resized(x, size, cv2.INTER_AREA)
    return F.interpolate(x, size=size, mode="area")


def _window_sums(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sums over a sliding window of 2r+1 along `dim`, zeros outside, via a running sum."""
    size = 2 * radius + 1
    padding = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [radius + 1, radius]
    running = F.pad(x, padding).cumsum(dim)
    length = running.shape[dim]
    return running.narrow(dim, size, length - size) - running.narrow(dim, 0, length - size)


def _window_counts(length: int, radius: int, device: torch.device) -> torch.Tensor:
    """How many in-bounds pixels each position's window covers."""
    index = torch.arange(length, device=device)
    return (index + radius).clamp(max=length - 1) - (index - radius).clamp(min=0) + 1


@functools.lru_cache(maxsize=16)
def _window_counts_2d(height: int, width: int, radius: int) -> np.ndarray:
    """How many in-bounds pixels each pixel's (2r+1)² window covers; the same for every frame
    of a size, so made once (read only)."""
    window = (2 * radius + 1, 2 * radius + 1)
    counts = cv2.boxFilter(
        np.ones((height, width), np.float32),
        -1,
        window,
        normalize=False,
        borderType=cv2.BORDER_CONSTANT,
    )
    counts.flags.writeable = False
    return counts


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)² window, normalised at the borders; x is [N,C,H,W].

    Running sums make the cost independent of the radius (and are far faster on CPU than
    avg_pool2d); summing along the rows first keeps float32 sums small and accurate.
    """
    if radius <= 0:
        return x
    height, width = x.shape[-2:]
    if _opencv_can_filter(x):
        window = (2 * radius + 1, 2 * radius + 1)
        counts = _window_counts_2d(height, width, radius)

        def mean(source: np.ndarray, target: np.ndarray) -> None:
            cv2.boxFilter(
                source, -1, window, dst=target, normalize=False, borderType=cv2.BORDER_CONSTANT
            )
            np.divide(target, counts, out=target)

        return _opencv_planes(x, mean)
    sums = _window_sums(_window_sums(x, radius, -1), radius, -2)
    counts = (
        _window_counts(height, radius, x.device)[:, None]
        * _window_counts(width, radius, x.device)[None, :]
    )
    return sums / counts.to(x.dtype)


def _guided_coefficients(
    guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window least-squares fit source ≈ slope·guide + offset, box-averaged."""
    mean_guide = box_filter(guide, radius)
    mean_source = box_filter(source, radius)
    covariance = box_filter(guide * source, radius) - mean_guide * mean_source
    variance = box_filter(guide * guide, radius) - mean_guide * mean_guide
    slope = covariance / (variance + eps)
    offset = mean_source - slope * mean_guide
    return box_filter(slope, radius), box_filter(offset, radius)


def guided_filter(
    guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float
) -> torch.Tensor:
    """He et al.'s guided filter with a gray guide: the output follows the guide's edges.

    guide is [N,1,H,W], source [N,C,H,W]; the result is locally linear in the guide.
    """
    radius = min(radius, (min(guide.shape[-2:]) - 1) // 2)
    if radius <= 0:
        return source
    slope, offset = _guided_coefficients(guide, source, radius, eps)
    return slope * guide + offset


def gaussian_radius(sigma: float, size: tuple[int, int]) -> int:
    """How many pixels each side `gaussian_blur` reaches for `sigma` on a plane of `size`
    (2.5 sigma, at least one, less than the plane's shorter side); 0: no blur."""
    if sigma <= 0.05:
        return 0
    return max(0, min(max(1, math.ceil(2.5 * sigma)), min(size) - 1))


@functools.lru_cache(maxsize=16)
def gaussian_taps(sigma: float, radius: int) -> torch.Tensor:
    """The blur's 2·radius + 1 weights, fp32, as OpenCV's GaussianBlur makes them."""
    taps = cv2.getGaussianKernel(2 * radius + 1, sigma, ktype=cv2.CV_32F)
    return torch.from_numpy(np.ascontiguousarray(taps.ravel()))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N,C,H,W] with replicate borders."""
    radius = gaussian_radius(sigma, tuple(x.shape[-2:]))
    if radius <= 0:
        return x
    if _opencv_can_filter(x):
        size = (2 * radius + 1, 2 * radius + 1)

        def blur(source: np.ndarray, target: np.ndarray) -> None:
            cv2.GaussianBlur(source, size, sigma, dst=target, borderType=cv2.BORDER_REPLICATE)

        return _opencv_planes(x, blur)
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def guided_upsample(
    guide_small: torch.Tensor,
    source_small: torch.Tensor,
    guide_full: torch.Tensor,
    radius: int,
    eps: float,
    blur_sigma: float = 0.0,
) -> torch.Tensor:
    """Edge-aware upsampling (He & Sun's fast guided filter).

    Fits source ≈ a·guide + b in small windows at low resolution, upsamples the smooth
    coefficients a and b, and applies them to the full-resolution guide: edges come from the
    full-resolution frame, colours and texture from the low-resolution source.
    guide_*: [N,1,h,w] / [N,1,H,W]; source_small: [N,C,h,w]. Returns [N,C,H,W], blurred by
    `gaussian_blur` with `blur_sigma` (in the same pass on the CPU: mask refinement's feather).
    """
    radius = min(radius, (min(guide_small.shape[-2:]) - 1) // 2)
    if radius <= 0:
        upsampled = upsample_bilinear(source_small, guide_full.shape[-2:])
        return gaussian_blur(upsampled, blur_sigma)
    kernels = fused_norm.for_frames(guide_small, source_small, guide_full)
    if kernels is not None and guide_small.shape[0] == 1 and source_small.shape[0] == 1:
        # One pass over each plane instead of some twenty torch and OpenCV calls (and the
        # blur's two of OpenCV).
        blur = gaussian_radius(blur_sigma, tuple(guide_full.shape[-2:]))
        taps = gaussian_taps(blur_sigma, blur) if blur > 0 else _NO_TAPS
        upsampled = kernels.guided_upsample(
            guide_small[0, 0], source_small[0], guide_full[0, 0], radius, eps, taps
        )
        return upsampled[None]
    slope, offset = _guided_coefficients(guide_small, source_small, radius, eps)
    size = guide_full.shape[-2:]
    slope = upsample_bilinear(slope, size)
    offset = upsample_bilinear(offset, size)
    return gaussian_blur(slope.mul_(guide_full).add_(offset), blur_sigma)


_NO_TAPS = torch.empty(0)
