"""Writes random-weight checkpoints in the official YOLACT file format, for tests.

The key list comes from fixtures/yolact_checkpoint_format.json: the shared specification of
every key and shape of each official config (the shared notes' yolact/checkpoint_format.json,
minified), not from partialstyle's own model, so loading these files tests the model against
an independent description of the official one.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import torch

SPEC_PATH = Path(__file__).parent / "fixtures" / "yolact_checkpoint_format.json"
V1_CONFIGS = ("yolact_base", "yolact_im700", "yolact_resnet50", "yolact_darknet53")


@cache
def official_spec() -> dict[str, dict]:
    """config name -> {"num_params": int, "keys": [[key, shape], ...]} in the official order."""
    return json.loads(SPEC_PATH.read_text())


def official_keys(config_name: str) -> list[tuple[str, tuple[int, ...]]]:
    """Keys and shapes of the official model's state_dict, without extras carried by files."""
    return [(key, tuple(shape)) for key, shape in official_spec()[config_name]["keys"]]


def file_keys(config_name: str) -> list[tuple[str, tuple[int, ...]]]:
    """Keys and shapes expected in the released file: v1 files also hold a third FPN
    downsample layer that the official loader drops."""
    keys = official_keys(config_name)
    if config_name in V1_CONFIGS:
        at = 1 + max(i for i, (k, _) in enumerate(keys) if k.startswith("fpn.downsample_layers"))
        extra = [
            ("fpn.downsample_layers.2.weight", (256, 256, 3, 3)),
            ("fpn.downsample_layers.2.bias", (256,)),
        ]
        keys = keys[:at] + extra + keys[at:]
    return keys


def random_tensor(key: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A plausible value for one tensor: scaled conv weights, BN statistics near identity."""
    if key.endswith("num_batches_tracked"):
        return torch.tensor(800000, dtype=torch.int64)
    if key.endswith("running_var"):
        return torch.rand(shape, generator=generator) + 0.5
    if key.endswith("weight") and len(shape) == 1:  # BN scale
        return torch.rand(shape, generator=generator) * 0.4 + 0.8
    if len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        return torch.randn(shape, generator=generator) / math.sqrt(fan_in)
    return torch.randn(shape, generator=generator) * 0.05  # biases, BN shift and mean


def random_state_dict(
    config_name: str, seed: int = 0, person_logit_bias: float = 0.0
) -> dict[str, torch.Tensor]:
    """Deterministic random weights with exactly the released file's keys, in its order.

    person_logit_bias, when not 0, is added to the "person" logit (class channel 1) of every
    anchor, and the class layer's weights are scaled down so that the bias decides: random
    weights then still yield detections, all of people.
    """
    generator = torch.Generator().manual_seed(seed)
    state_dict = {
        key: random_tensor(key, shape, generator) for key, shape in file_keys(config_name)
    }
    if person_logit_bias:
        state_dict["prediction_layers.0.conf_layer.weight"] *= 0.01
        state_dict["prediction_layers.0.conf_layer.bias"][1::81] += person_logit_bias
    return state_dict


def write_official_checkpoint(
    config_name: str,
    directory: Path,
    seed: int = 0,
    person_logit_bias: float = 0.0,
    file_name: str | None = None,
    legacy_format: bool = False,
) -> Path:
    """Save random weights as <config>_54_800000.pth (or file_name) in directory.

    legacy_format writes the pre-1.6 torch.save format the 2019 files may use.
    """
    path = Path(directory) / (file_name or f"{config_name}_54_800000.pth")
    state_dict = random_state_dict(config_name, seed, person_logit_bias)
    torch.save(state_dict, path, _use_new_zipfile_serialization=not legacy_format)
    return path
