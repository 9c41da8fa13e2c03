"""Pick the torch device and thread count, the same way everywhere."""

from __future__ import annotations

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
