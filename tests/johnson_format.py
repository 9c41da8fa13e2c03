"""Write checkpoints in the exact layout of the published fast_neural_style .pth files.

The official files cannot be downloaded in the test environment, so the tests build the same state
dict (key names, shapes, legacy instance-norm statistics, saved with ``torch.save``) from a table
that does not depend on partialstyle's module, filled with seeded random weights.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _conv(name: str, cin: int, cout: int, k: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{name}.conv2d.weight", (cout, cin, k, k)), (f"{name}.conv2d.bias", (cout,))]


def _norm(name: str, channels: int) -> list[tuple[str, tuple[int, ...]]]:
    return [
        (f"{name}.{part}", (channels,))
        for part in ("weight", "bias", "running_mean", "running_var")
    ]


def published_layout() -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every entry in e.g. saved_models/candy.pth, in file order."""
    layout = _conv("conv1", 3, 32, 9) + _norm("in1", 32)
    layout += _conv("conv2", 32, 64, 3) + _norm("in2", 64)
    layout += _conv("conv3", 64, 128, 3) + _norm("in3", 128)
    for block in range(1, 6):
        for half in (1, 2):
            layout += _conv(f"res{block}.conv{half}", 128, 128, 3) + _norm(
                f"res{block}.in{half}", 128
            )
    layout += _conv("deconv1", 128, 64, 3) + _norm("in4", 64)
    layout += _conv("deconv2", 64, 32, 3) + _norm("in5", 32)
    layout += _conv("deconv3", 32, 3, 9)
    return layout


def write_published_style_checkpoint(path: Path, seed: int = 0) -> Path:
    """A deterministic random checkpoint, shaped and keyed like the official ones."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in published_layout():
        if key.endswith("running_var"):
            state[key] = torch.ones(shape)
        elif key.endswith("running_mean"):
            state[key] = torch.zeros(shape)
        elif ".conv2d.weight" in key:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=generator) / fan_in**0.5
        elif key.startswith(("in", "res")) and key.endswith(".weight"):
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
    # the final layer maps to 0..255 pixels, as the trained networks do
    state["deconv3.conv2d.weight"] *= 60.0
    state["deconv3.conv2d.bias"] += 128.0
    torch.save(state, path)
    return path
