"""Networks loaded in memory, one per (model, device), so each file is read once per process.

(Not the `models/cache` folder, which keeps downloaded wheels: see `prepare.py`.)

The pipeline owns a `ModelCache` and hands it down to the stages that run networks.
`default_cache` is the one every pipeline shares unless given another: the OBS inference
process serves every filter from one process, so their pipelines load each network once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from partialstyle.weights.files import (
    MISSING,
    is_network_file,
    models_dir,
    models_dir_setting,
    weights_error,
)
from partialstyle.weights.load import load_weights
from partialstyle.weights.registry import JOHNSON_FIX, YOLACT_FIX


class ModelCache:
    """Loaded networks by what they are and their device; loaded on first use, then kept.

    Thread-safe: the OBS inference process runs several filters' frames side by side
    (`inference_server.FRAME_THREADS`) and each filter styles in a background thread, so two
    threads may ask for the same network at once. A hit takes no lock; a miss loads under
    the lock, so a network is built once and every caller gets the same object.
    """

    def __init__(self) -> None:
        self._networks: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def loaded(self) -> dict[tuple[str, ...], Any]:
        """A snapshot of what is loaded: (name or file, ..., device) -> network."""
        return dict(self._networks)

    def _get(self, key: tuple[str, ...], build: Callable[[], Any]) -> Any:
        network = self._networks.get(key)
        if network is None:
            with self._lock:
                network = self._networks.get(key)
                if network is None:
                    network = build()
                    self._networks[key] = network
        return network

    def load_model(self, name: str, device: torch.device) -> torch.nn.Module:
        """The default model `name` (see `models/manifest.json`) on `device`.

        Kept per models folder, so a different PARTIALSTYLE_MODELS is a different network."""
        key = (name, models_dir_setting() or "", str(device))
        return self._get(key, lambda: load_weights(name, device=device))

    def load_johnson(self, source: str, device: torch.device) -> torch.nn.Module:
        """A Johnson TransformerNet by name or file; a changed file is loaded again."""
        path = johnson_path(source).resolve()
        key = (f"johnson:{path}:{path.stat().st_mtime_ns}", str(device))
        return self._get(key, lambda: load_weights("johnson", path, device))

    def load_yolact(self, path: Path, device: torch.device) -> Any:
        """A YolactSegmenter for the checkpoint at `path`."""
        from partialstyle.segment.yolact import YolactSegmenter

        key = (f"yolact:{Path(path).resolve()}", str(device))
        return self._get(key, lambda: YolactSegmenter(load_weights("yolact", path, device), device))

    @staticmethod
    def yolact_path(weights: str | None) -> Path | None:
        return yolact_path(weights)


def johnson_path(source: str) -> Path:
    """A Johnson network by name (models/johnson/<name>.pth) or by file path."""
    if is_network_file(source):
        path = Path(source).expanduser()
    else:
        path = models_dir() / "johnson" / f"{source}.pth"
    if not path.is_file():
        raise weights_error(path, MISSING, JOHNSON_FIX)
    return path


def yolact_path(weights: str | None) -> Path | None:
    """The YOLACT checkpoint to use: the given file, or the first in models/yolact/ (or None)."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise weights_error(path, MISSING, YOLACT_FIX)
        return path
    folder = models_dir() / "yolact"
    found = sorted(folder.glob("*.pth")) if folder.is_dir() else []
    return found[0] if found else None


default_cache = ModelCache()


# The shared cache's methods as functions, for callers that do not hold a cache.
def load_model(name: str, device: torch.device) -> torch.nn.Module:
    return default_cache.load_model(name, device)


def load_johnson(source: str, device: torch.device) -> torch.nn.Module:
    return default_cache.load_johnson(source, device)


def load_yolact(path: Path, device: torch.device) -> Any:
    return default_cache.load_yolact(path, device)
