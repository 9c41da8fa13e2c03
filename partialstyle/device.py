"""Pick the torch device and thread count, the same way everywhere."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """Map a user's device name to a torch device: auto tries cuda, then mps, then cpu."""
    import torch  # here, so that settings code can import this module without loading torch

    if name not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            "device 'mps' was asked for but this machine has no Apple GPU; use --device cpu"
        )
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Limit torch's CPU threads (None keeps torch's default of one per core).

    More threads than the machine has are capped: they only slow torch down, and absurd counts
    crash it.
    """
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(min(threads, os.cpu_count() or 1))


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # the most glibc accepts on 64-bit machines
_kept = False


def keep_freed_memory() -> bool:
    """Make this process's malloc keep freed blocks for reuse instead of returning them.

    By default glibc serves blocks of a few MB from fresh mmaps and unmaps them when freed,
    so every frame's activations (a 640x360 frame's largest is 15 MB) are page-faulted in
    again: about 570 faults and 3.5 ms of a 30 ms style network on one thread. With the
    threshold fixed at its maximum and no trimming, the heap keeps the frame's working set,
    a few tens of MB. It settles within the first frames (a freed block can be kept from merging
    by a small allocation beside it, so a few are taken fresh first), then a frame faults in
    nothing. Call it in processes that run the networks (the pipeline does), not in OBS's own.
    Returns whether glibc took the settings (False on other C libraries).
    """
    global _kept
    if _kept:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _kept = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    )
    return _kept
