"""The one strict loader: a weight file and its registry entry in, a ready network out.

Every network loads the same way: find the file (a default model's is checked against the
manifest), read its tensors (safetensors, or a torch.save state dict read with
weights_only=True), check what the file declares, resolve the checkpoint format's known
differences (`Weights.adapt`), build the empty module (`Weights.build`), load every tensor
strictly (same keys, same shapes) and make it ready for inference (`Weights.ready`).

Whatever goes wrong with the file is one `ModelMissingError` line that names the file, what
is wrong with it and the command that makes it (`weights_error`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from partialstyle.errors import one_line
from partialstyle.weights.files import MISSING, model_path, weights_error
from partialstyle.weights.registry import Weights, weights_named


def load_weights(
    weights: Weights | str,
    path: Path | str | None = None,
    device: torch.device | str = "cpu",
    **options: Any,
) -> nn.Module:
    """The network of registry entry `weights`, from `path` (default: the entry's own file in
    the models folder), on `device`, ready for inference. `options` are the entry's
    (`Weights.options`: e.g. precision="fp32" for the style networks)."""
    weights = weights_named(weights) if isinstance(weights, str) else weights
    unknown = sorted(set(options) - set(weights.options))
    if unknown:
        raise TypeError(f"{weights.name} takes no option {', '.join(unknown)}")
    path = Path(path) if path is not None else model_path(weights.name)
    state, metadata = read_state_dict(weights, path)
    _check_variant(weights, path, metadata)
    if weights.adapt is not None:
        state = weights.adapt(state)
    network = weights.build(weights, state, path, options)
    _load_strictly(weights, network, state, path)
    return weights.ready(network, torch.device(device), options)


def read_state_dict(weights: Weights, path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The file's tensors (on the CPU) and its metadata, or the one-line error."""
    if not path.is_file():
        raise weights_error(path, MISSING, weights.fix)
    if weights.file_format == "safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as error:  # safetensors raises several types for damaged files
            raise weights_error(
                path,
                f"is not a readable safetensors file ({one_line(error, sentence=True)})",
                weights.fix,
            ) from None
        return state, metadata
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise weights_error(
            path,
            f"is not a readable PyTorch checkpoint ({one_line(error, sentence=True)})",
            weights.fix,
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, Tensor) for key, value in state.items()
    ):
        raise weights_error(
            path,
            f"is not a flat state_dict of tensors (it holds a {type(state).__name__}), so not "
            f"{weights.label}'s weights",
            weights.fix,
        )
    return state, {}  # keeps torch's per-module _metadata (YOLACT's batch counters use it)


def _check_variant(weights: Weights, path: Path, metadata: Mapping[str, str]) -> None:
    """A file made for a variant says which: selfie files as `variant`, the arbitrary file as
    the `format` in its JSON `partialstyle` block."""
    if weights.variant is None:
        return
    declared = metadata.get("variant")
    if declared is None and "partialstyle" in metadata:
        try:
            declared = json.loads(metadata["partialstyle"]).get("format")
        except (ValueError, AttributeError):
            declared = None
    if declared != weights.variant:
        raise weights_error(
            path,
            f"does not hold {weights.label}'s weights (it declares {declared!r}, expected "
            f"{weights.variant!r})",
            weights.fix,
        )


def _load_strictly(weights: Weights, network: nn.Module, state: dict, path: Path) -> None:
    """Every tensor of the file, into a module with exactly those keys and shapes."""
    expected = network.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong_shape = sorted(
        key for key in expected.keys() & state.keys() if expected[key].shape != state[key].shape
    )
    if missing or unexpected or wrong_shape:
        details = (
            f"missing {missing[:3]}" if missing else "",
            f"unexpected {unexpected[:3]}" if unexpected else "",
            f"wrong shape {wrong_shape[:3]}" if wrong_shape else "",
        )
        raise weights_error(
            path,
            f"does not hold {weights.label}'s weights ({'; '.join(d for d in details if d)})",
            weights.fix,
        )
    # A module built on the meta device (YOLACT) takes the file's tensors as they are.
    assign = any(parameter.is_meta for parameter in network.parameters())
    network.load_state_dict(state, strict=True, assign=assign)
