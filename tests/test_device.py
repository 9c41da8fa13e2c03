"""Process-wide settings for running the networks (``partialstyle.device``)."""

from __future__ import annotations

import ast
import platform
import subprocess
import sys

import pytest

_ALLOCATE_SIXTY_TIMES = """
import ctypes, resource, sys, torch
from partialstyle.device import keep_freed_memory
if sys.argv[2] == "blocked":
    # Map a page a little above the program break, so the heap cannot grow in place and glibc
    # takes its memory from separate mmaps, as when a library is mapped just above the heap.
    libc = ctypes.CDLL("libc.so.6")
    libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_long]
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 + [ctypes.c_long]
    above = (libc.sbrk(0) + (1 << 18)) & ~4095
    MAP_PRIVATE_ANONYMOUS_FIXED_NOREPLACE = 0x02 | 0x20 | 0x100000
    assert libc.mmap(above, 4096, 0, MAP_PRIVATE_ANONYMOUS_FIXED_NOREPLACE, -1, 0) == above
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()
faults = []
for _ in range(60):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(1, 32, 360, 640, dtype=torch.bfloat16)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(faults)
"""


def _page_faults(setting: str, heap: str) -> list[int]:
    """Page faults of allocating, filling and freeing a 15 MB buffer sixty times, in a process
    of its own (the setting is process-wide)."""
    result = subprocess.run(
        [sys.executable, "-c", _ALLOCATE_SIXTY_TIMES, setting, heap],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("heap", ["grows", "blocked"])
def test_freed_frame_buffers_are_reused_without_page_faults(heap: str) -> None:
    """A 640x360 frame's largest activation (15 MB): by default every allocation faults its
    pages in again; after keep_freed_memory the faults stop once the heap has settled.

    How soon is up to glibc: torch's 64-byte-aligned request is a little larger than the block
    it freed, and a small allocation that lands just after that block keeps it from merging, so
    a few blocks may be taken fresh first (up to 14 of 40 in 100 runs here). The pipeline
    behaves alike: a few warm-up frames, then none. Half the allocations is a wide margin.
    """
    default, kept = _page_faults("default", heap), _page_faults("keep", heap)
    assert min(default) > 100, default
    assert kept[0] > 100, kept
    assert sum(faults < 10 for faults in kept) >= len(kept) // 2, kept
