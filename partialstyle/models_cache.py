"""Loaded models, shared by every pipeline in the process (e.g. several OBS filters)."""

from __future__ import annotations

import threading

import torch

from partialstyle.modelstore import model_path

_loaded: dict[tuple[str, str], torch.nn.Module] = {}
_lock = threading.Lock()


def _build(name: str, device: torch.device) -> torch.nn.Module:
    path = model_path(name)
    if name == "multistyle26":
        from partialstyle.style.multistyle import MultiStyleNet

        return MultiStyleNet.load(path, device)
    if name in ("selfie", "selfie-landscape"):
        from partialstyle.segment.selfie import SelfieSegmenter

        return SelfieSegmenter.load(path, device)
    raise KeyError(f"no loader for model {name!r}")


def load_model(name: str, device: torch.device) -> torch.nn.Module:
    """The model `name` on `device`, loaded once and kept."""
    key = (name, str(device))
    model = _loaded.get(key)
    if model is None:
        with _lock:
            model = _loaded.get(key)
            if model is None:
                model = _build(name, device).eval()
                _loaded[key] = model
    return model
