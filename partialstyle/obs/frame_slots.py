"""Frame-sized shared memory between OBS and the inference process.

A slot is a file on a RAM-backed file system (Linux: /dev/shm; elsewhere the temp folder)
mapped into both processes, with a numpy H×W×4 uint8 view. Plain files and `mmap` rather than
`multiprocessing.shared_memory`: on Python 3.11 every SharedMemory (even one only attached)
registers with multiprocessing's resource tracker, which starts `sys.executable` as a helper
process, and inside OBS `sys.executable` is not our Python.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import tempfile
from pathlib import Path

import numpy as np

_counter = itertools.count(1)


def slot_folder() -> Path:
    """Where slots live: /dev/shm when it is usable, else the system's temp folder."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path(tempfile.gettempdir())


class FrameSlot:
    """One H×W×4 uint8 frame in a memory-mapped file."""

    def __init__(self, path: Path, width: int, height: int, create: bool):
        self.path, self.width, self.height = path, width, height
        size = width * height * 4
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        descriptor = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(descriptor, size)
            self._map = mmap.mmap(descriptor, size)
        finally:
            os.close(descriptor)  # the mapping keeps the memory
        self.array = np.ndarray((height, width, 4), np.uint8, buffer=self._map)

    @classmethod
    def create(cls, width: int, height: int, label: str) -> FrameSlot:
        name = f"partialstyle-{os.getpid()}-{next(_counter)}-{label}"
        return cls(slot_folder() / name, width, height, create=True)

    def close(self) -> None:
        """Unmap (the numpy view must not be used afterwards)."""
        self.array = None  # type: ignore[assignment]
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()

    def unlink(self) -> None:
        """Remove the file; processes that mapped it keep their mapping."""
        with contextlib.suppress(OSError):
            self.path.unlink()
