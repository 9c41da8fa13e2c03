"""Process-wide settings for running the networks (``partialstyle.device``)."""

from __future__ import annotations

import ast
import platform
import subprocess
import sys

import pytest

_ALLOCATE_FOUR_TIMES = """
import resource, sys, torch
from partialstyle.device import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(1, 32, 360, 640, dtype=torch.bfloat16)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(faults)
"""


def _page_faults(setting: str) -> list[int]:
    """Page faults of allocating, filling and freeing a 15 MB buffer four times, in a process
    of its own (the setting is process-wide)."""
    result = subprocess.run(
        [sys.executable, "-c", _ALLOCATE_FOUR_TIMES, setting],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_frame_buffers_are_reused_without_page_faults() -> None:
    """A 640x360 frame's largest activation (15 MB): by default every allocation faults its
    pages in again; after keep_freed_memory only the first does."""
    default, kept = _page_faults("default"), _page_faults("keep")
    assert min(default) > 100
    assert kept[0] > 100 and max(kept[1:]) < 10
