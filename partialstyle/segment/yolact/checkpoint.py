"""Reading official YOLACT .pth files: config recognition, official key rules, strict load."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from partialstyle.errors import PartialStyleError

from .config import CONFIGS, YolactConfig
from .model import Yolact

# The official FPN builds this many extra strided levels; checkpoints trained with more
# (v1 files carry fpn.downsample_layers.2) have the surplus dropped on load.
NUM_EXTRA_FPN_LEVELS = 2

# Official file names are <config>_<epoch>_<iteration>.pth, e.g. yolact_base_54_800000.pth.
_FILE_NAME = re.compile(r"^(?P<name>.+?)(?:_config)?(?:_\d+_\d+)?$")
_EXTRA_DOWNSAMPLE = re.compile(r"^fpn\.downsample_layers\.(\d+)\.")


def fill_batchnorm_counters(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add num_batches_tracked = 0 where PyTorch's own BatchNorm loader would.

    BatchNorm fills a missing counter when the file predates it: its module's saved version is
    below 2, or the file has no version metadata. Doing the same before identifying the config
    accepts exactly the files that the official load_state_dict accepts.
    """
    metadata = getattr(state_dict, "_metadata", None) or {}
    filled = dict(state_dict)
    for key in state_dict:
        if not key.endswith(".running_mean"):
            continue
        module = key.removesuffix(".running_mean")
        counter = f"{module}.num_batches_tracked"
        version = metadata.get(module, {}).get("version")
        if counter not in filled and (version is None or version < 2):
            filled[counter] = torch.tensor(0, dtype=torch.long)
    return filled


def apply_official_key_rules(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the keys the official Yolact.load_weights drops, and nothing else.

    1. backbone.layer1..4.*: duplicate names from before the official code's 2018 rename
       (backbone.layers.* is kept).
    2. fpn.downsample_layers.<i>.* for i >= 2: a third extra level the v1 models were trained
       with and that the released architecture no longer has.
    """
    kept = type(state_dict)()
    if hasattr(state_dict, "_metadata"):
        kept._metadata = state_dict._metadata
    for key, tensor in state_dict.items():
        if key.startswith("backbone.layer") and not key.startswith("backbone.layers"):
            continue
        extra = _EXTRA_DOWNSAMPLE.match(key)
        if extra and int(extra.group(1)) >= NUM_EXTRA_FPN_LEVELS:
            continue
        kept[key] = tensor
    return kept


@cache
def expected_shapes(config_name: str) -> dict[str, tuple[int, ...]]:
    """Every state_dict key and shape the model of this config has (built without allocating)."""
    with torch.device("meta"):
        model = Yolact(CONFIGS[config_name])
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def describe_mismatch(state_dict: dict[str, Tensor], config_name: str) -> str:
    """What separates a state_dict from a config, in a few words; "" when it matches."""
    expected = expected_shapes(config_name)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} is {list(state_dict[k].shape)}, expected {list(shape)}"
        for k, shape in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if wrong:
        parts.append(f"{len(wrong)} wrong shapes (e.g. {wrong[0]})")
    return ", ".join(parts)


def config_from_file_name(path: Path) -> YolactConfig | None:
    """The config an official file name names (yolact_plus_base_54_800000.pth), if any."""
    match = _FILE_NAME.match(path.name.removesuffix(".pth"))
    return CONFIGS.get(match.group("name")) if match else None


def configs_matching_shapes(state_dict: dict[str, Tensor]) -> list[YolactConfig]:
    """Configs whose model has exactly these keys and shapes, in CONFIGS order.

    yolact_base and yolact_im700 have identical weights shapes (only the input size differs),
    so both match a file of either; callers that must choose take the first (yolact_base).
    """
    return [c for c in CONFIGS.values() if not describe_mismatch(state_dict, c.name)]


def identify_config(
    path: Path, state_dict: dict[str, Tensor], config_name: str | None = None
) -> YolactConfig:
    """Choose the config: explicit name, else the file name, else the tensor shapes."""
    if config_name is not None:
        if config_name.removesuffix("_config") not in CONFIGS:
            raise PartialStyleError(
                f"unknown YOLACT config {config_name!r}; expected one of {', '.join(CONFIGS)}"
            )
        named = CONFIGS[config_name.removesuffix("_config")]
    else:
        named = config_from_file_name(path)

    if named is not None:
        mismatch = describe_mismatch(state_dict, named.name)
        if not mismatch:
            return named
        others = [c.name for c in configs_matching_shapes(state_dict)]
        hint = f"; its tensors match {' / '.join(others)}" if others else ""
        raise PartialStyleError(
            f"{path.name} should hold {named.name} weights but does not: {mismatch}{hint}"
        )

    matches = configs_matching_shapes(state_dict)
    if matches:
        return matches[0]
    closest = min(CONFIGS, key=lambda name: _mismatch_size(state_dict, name))
    raise PartialStyleError(
        f"{path.name} matches no YOLACT config ({len(state_dict)} tensors, e.g. "
        f"{next(iter(state_dict), 'none')}); expected one of {', '.join(CONFIGS)}; closest is "
        f"{closest}: {describe_mismatch(state_dict, closest)}"
    )


def _mismatch_size(state_dict: dict[str, Tensor], config_name: str) -> int:
    expected = expected_shapes(config_name)
    differing = set(expected).symmetric_difference(state_dict)
    wrong = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != expected[k]]
    return len(differing) + len(wrong)
