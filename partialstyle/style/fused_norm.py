"""A fused CPU kernel for the style networks' region normalisation, built on first use.

Between two convolutions the 26-style network does only memory-bound work: per-channel
statistics (over the image and, with regions, per region), a per-pixel scale and shift
blended from the regions' rows, ReLU, the residual add and padding for the next conv. As
separate torch ops that is 4-6 passes over each activation; these two kernels make it two
(one read for all statistics, one read and one write for the rest), whatever the number of
regions, in fp32 or bf16 with fp32 arithmetic.

The kernel is C++ (``fused_norm.cpp`` beside this file) compiled with torch's extension
builder the first time it is wanted (about a minute, once per machine; cached under torch's
extension directory, keyed by the source and the CPU's instruction sets). Building happens in
a child process watched by a background thread, so the first frames use the plain torch ops
meanwhile and a command that ends sooner does not cut the build short; without a C++
compiler the plain ops stay.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from partialstyle.errors import one_line
from partialstyle.style.multistyle import STATISTICS_PRIOR_PIXELS

_log = logging.getLogger(__name__)

_SOURCE_PATH = Path(__file__).with_name("fused_norm.cpp")

_lock = threading.Lock()
_module: ModuleType | None = None
_state = "not started"  # "building", "ready" or "failed: <reason>"
# PARTIALSTYLE_FUSED_NORM=0 keeps the plain torch ops (for comparisons, or a broken build).
_enabled = os.environ.get("PARTIALSTYLE_FUSED_NORM", "1") != "0"


def _cpu_flags() -> str:
    """The CPU's instruction-set flags, so a kernel built with -march=native is per CPU."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return ""


def _load() -> ModuleType:
    """Build (if the cache lacks it) and import the extension; raises if it cannot."""
    # torch's extension builder logs warnings (no CUDA, compiler checks) that would land in
    # the middle of a user's terminal output; a failed build is reported by status().
    builder_log = logging.getLogger("torch.utils.cpp_extension")
    builder_level = builder_log.level
    builder_log.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load_inline

        source = _SOURCE_PATH.read_text()
        key = hashlib.sha256((source + _cpu_flags() + torch.__version__).encode()).hexdigest()
        return load_inline(
            name=f"partialstyle_fused_norm_{key[:12]}",
            cpp_sources=[source],
            functions=["region_moments", "region_affine", "region_norm", "mask_pyramid"],
            extra_cflags=["-O3", "-march=native", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    finally:
        builder_log.setLevel(builder_level)


def _build() -> None:
    """Build in a child process of its own session, then import here.

    The child finishes the build (and releases torch's lock file in the build directory)
    even if this process exits first, as a quick `partialstyle image` does; a build killed
    half way would leave the lock behind and every later build waiting on it.
    """
    global _module, _state
    try:
        child = subprocess.run(
            [sys.executable, "-m", "partialstyle.style.fused_norm"],
            capture_output=True,
            text=True,
            start_new_session=True,
            timeout=1800,
        )
        if child.returncode != 0:
            lines = (child.stdout + child.stderr).strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"build exited with {child.returncode}")
        _module = _load()  # built: this only imports it
        _state = "ready"
    except Exception as exc:  # no compiler, no headers, a failed build: plain ops stay
        reason = one_line(exc)
        _state = f"failed: {reason[:200]}"
        _log.info("fused normalisation kernel unavailable (%s); using plain torch ops", _state)


def kernels(wait: bool = False) -> ModuleType | None:
    """The compiled kernels if ready; otherwise start building them (once) and return None.

    ``wait`` blocks until the build is done (tests, benchmarks).
    """
    global _state
    if not _enabled:
        return None
    if _module is not None:
        return _module
    with _lock:
        if _state == "not started":
            _state = "building"
            thread = threading.Thread(target=_build, name="fused-norm-build", daemon=True)
            thread.start()
            _kernels_thread[0] = thread
    if wait and _kernels_thread[0] is not None:
        _kernels_thread[0].join()
    return _module


_kernels_thread: list[threading.Thread | None] = [None]


@contextmanager
def disabled() -> Iterator[None]:
    """Use the plain torch ops inside this block (the kernels' reference in tests)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def status() -> str:
    """ "ready", "building", "not started", "disabled" or "failed: <reason>" (doctor, bench)."""
    return _state if _enabled else "disabled"


def applies(x: Tensor) -> bool:
    """Whether the kernels handle ``x`` [N,C,H,W]: CPU inference in fp32 or bf16."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.dim() == 4
        and x.shape[1] <= 64
        and not (torch.is_grad_enabled() and x.requires_grad)
    )


def fused_region_norm(
    kernels: ModuleType,
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    other_masks: Tensor | None,
    base: int | None,
    eps: float,
    *,
    relu: bool = False,
    residual: Tensor | None = None,
    out_pad: int = 0,
    pad_mode: str = "reflect",
    subpixel: bool = False,
    out_block: int = 1,
) -> Tensor:
    """Region instance norm of one image [1,C,H,W] with the fused kernels.

    ``gamma``/``beta`` are the regions' rows [R,C] (fp32); ``other_masks`` (fp32
    [1,R-1,H,W], contiguous) are the masks of every region but ``base``, in order, or None
    when R = 1 (the masks sum to 1, so the base's is implied). Then ReLU, + ``residual``,
    padding by ``out_pad``: the result of ``multistyle.region_statistics`` and the blended
    affine, in one call and two passes over memory (one reads ``x`` for every statistic, the
    other writes the padded result); the statistics in between are computed in fp64.

    As in ``region_norm.FastSpatialCIN``, the base region's sums are the whole image's minus
    the others', and its row is the starting point to which the others add their masked
    differences, so pixels outside every other region cost no more than without regions.

    With ``subpixel``, ``x`` [1,4C,H/2,W/2] is an upsampling conv's output before
    ``pixel_shuffle(x, 2)`` (``fast_conv.PackedConv(..., shuffle=False)``): the kernel reads
    the upsampled image from it. ``out_block`` 2 returns the padded result as
    ``pixel_unshuffle(result, 2)``, the input of a conv on 2x2 pixel blocks. Both save a
    pass over the full-resolution image.
    """
    x = x if x.stride(1) == 1 else x.contiguous(memory_format=torch.channels_last)
    if residual is not None and residual.stride(1) != 1:
        residual = residual.contiguous(memory_format=torch.channels_last)
    empty = x.new_empty(0, dtype=torch.float32)
    return kernels.region_norm(
        x,
        empty if other_masks is None else other_masks,
        gamma.float().contiguous(),
        beta.float().contiguous(),
        -1 if base is None else base,
        eps,
        STATISTICS_PRIOR_PIXELS,
        x.new_empty(0) if residual is None else residual,
        relu,
        out_pad,
        pad_mode == "reflect",
        2 if subpixel else 1,
        out_block,
    )


if __name__ == "__main__":  # the build child (see _build): errors go to its stderr
    try:
        _load()
    except Exception as exc:
        sys.exit(f"fused normalisation kernel build failed: {one_line(exc)}")
