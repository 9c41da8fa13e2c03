"""Loaded models, shared by every pipeline in the process (e.g. several OBS filters)."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from partialstyle.errors import ModelMissingError
from partialstyle.modelstore import model_path, models_dir

_loaded: dict[tuple[str, str], object] = {}
_lock = threading.Lock()


def _build(name: str, device: torch.device) -> torch.nn.Module:
    path = model_path(name)
    if name == "multistyle26":
        from partialstyle.style.multistyle import MultiStyleNet

        return MultiStyleNet.load(path, device)
    if name == "arbitrary":
        from partialstyle.style.arbitrary import ArbitraryStyle

        return ArbitraryStyle.load(path, device)
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


def johnson_path(source: str) -> Path:
    """A Johnson network by name (models/johnson/<name>.pth) or by file path."""
    if source.endswith((".pth", ".model", ".pt")) or "/" in source or "\\" in source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ModelMissingError(f"Johnson style network {path} does not exist")
        return path
    path = models_dir() / "johnson" / f"{source}.pth"
    if not path.is_file():
        raise ModelMissingError(
            f"Johnson style network {source!r} is not in {path.parent}; run "
            "`partialstyle models fetch johnson` or train one with `partialstyle train-style`"
        )
    return path


def load_johnson(source: str, device: torch.device) -> torch.nn.Module:
    """A Johnson TransformerNet, loaded once per file (a changed file is loaded again)."""
    from partialstyle.style.johnson import TransformerNet

    path = johnson_path(source).resolve()
    key = (f"johnson:{path}:{path.stat().st_mtime_ns}", str(device))
    with _lock:
        if key not in _loaded:
            _loaded[key] = TransformerNet.load(path, device).eval()
        return _loaded[key]


def yolact_path(weights: str | None) -> Path | None:
    """The YOLACT checkpoint to use: the given file, or the first in models/yolact/ (or None)."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelMissingError(
                f"YOLACT weights {path} do not exist; "
                "run `partialstyle models fetch yolact-resnet50`"
            )
        return path
    folder = models_dir() / "yolact"
    found = sorted(folder.glob("*.pth")) if folder.is_dir() else []
    return found[0] if found else None


def load_yolact(path: Path, device: torch.device):
    """A YolactSegmenter, loaded once per file."""
    from partialstyle.segment.yolact import YolactSegmenter

    key = (f"yolact:{path.resolve()}", str(device))
    with _lock:
        if key not in _loaded:
            _loaded[key] = YolactSegmenter.load(path, device)
        return _loaded[key]
