"""The selfie network run by onnxruntime on the CPU.

The network is some sixty tiny layers (16 to 128 channels on a 144x256 input), so in torch
its time goes to per-operator overhead rather than arithmetic: 4.4 ms a frame on one thread
here, against 1.4 ms for onnxruntime on the same graph, exported from our own torch module at
load (about a second, once per process). Both give the same masks (within 1e-4); the torch
module stays the reference, runs on other devices and is the fallback when the export or
onnxruntime is unavailable.

Two things about the graph matter for onnxruntime's speed (one thread, 640x360 frame):
- Its shapes are fixed (one graph per batch size). With a free batch size the exporter
  records TensorFlow SAME padding as some hundred shape operators, run on every call: 2.5
  against 2.0 ms.
- TensorFlow's asymmetric SAME padding of the stride-2 layers is folded into the convs'
  own padding (`_pads_in_convs`). As separate Pad operators they run in the plain layout
  between onnxruntime's blocked convs, each with a layout change on both sides: 2.0 against
  1.6 ms.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from partialstyle.segment.selfie import SelfieSegmenter

log = logging.getLogger(__name__)

_INPUT, _OUTPUT = "image", "probability"


def _exported(network: SelfieSegmenter, batch: int) -> bytes:
    """The network as an ONNX graph for ``batch`` images (float32, on the CPU)."""
    example = torch.zeros(batch, 3, *network.input_size)
    graph = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The exporter warns about its own deprecation and about Python-side shape checks
        # that trace to constants, which is right for a fixed input size.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            graph,
            input_names=[_INPUT],
            output_names=[_OUTPUT],
            opset_version=17,
            dynamo=False,
        )
    return _pads_in_convs(graph.getvalue())


def _pads_in_convs(graph: bytes) -> bytes:
    """The graph with each zero Pad that feeds only a Conv folded into that Conv's pads.

    The exporter computes the pads with shape operators; onnxruntime's basic (hardware
    independent) optimisation folds those to constants first.
    """
    import onnx
    import onnxruntime
    from onnx import helper, numpy_helper

    with tempfile.TemporaryDirectory() as folder:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(folder) / "basic.onnx")
        options.log_severity_level = 3  # it lists the initializers it drops
        onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        model = onnx.load(options.optimized_model_filepath)
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    kept = []
    for node in model.graph.node:
        conv = _conv_after_zero_pad(node, constants, readers)
        if conv is None:
            kept.append(node)
            continue
        pads = constants[node.input[1]].tolist()  # [N, C, H, W begins, then ends]
        own = next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0, 0, 0, 0])
        merged = [own[0] + pads[2], own[1] + pads[3], own[2] + pads[6], own[3] + pads[7]]
        for attribute in [a for a in conv.attribute if a.name == "pads"]:
            conv.attribute.remove(attribute)
        conv.attribute.append(helper.make_attribute("pads", merged))
        conv.input[0] = node.input[0]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    unused = [tensor for tensor in model.graph.initializer if tensor.name not in used]
    for tensor in unused:  # the folded pads
        model.graph.initializer.remove(tensor)
    return model.SerializeToString()


def _conv_after_zero_pad(node, constants: dict, readers: dict):
    """The Conv that alone reads ``node``'s output, when ``node`` is a Pad with constant
    zero padding of the height and width only; else None."""
    if node.op_type != "Pad" or node.input[1] not in constants:
        return None
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    value = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    pads = constants[node.input[1]].tolist()
    following = readers.get(node.output[0], [])
    if (
        mode != b"constant"
        or (value is not None and float(value.reshape(-1)[0]) != 0.0)
        or len(pads) != 8
        or any(pads[i] != 0 for i in (0, 1, 4, 5))
        or len(following) != 1
        or following[0].op_type != "Conv"
        or following[0].input[0] != node.output[0]
        or any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in following[0].attribute)
    ):
        return None
    return following[0]


class OnnxRuntimeSelfie(nn.Module):
    """A `SelfieSegmenter` whose CPU float32 forward runs in onnxruntime.

    It keeps the torch network as `network` (its parameters, device and `.to()` are this
    module's) and uses it for anything else. Its sessions (one per batch size; batch 1's is
    made at load) run on one thread whatever torch's count: for sixty tiny layers a second
    thread costs more in hand-offs than it gains (3.3 against 3.0 ms a frame here, each after
    a two-thread style network). They do not spin while idle, so they leave the cores to OBS
    and the style networks.
    """

    def __init__(self, network: SelfieSegmenter) -> None:
        super().__init__()
        self.network = network
        self.variant = network.variant
        self.input_size = network.input_size
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()
        self.train(network.training)
        self._session(1)

    def _session(self, batch: int):
        session = self._sessions.get(batch)
        if session is None:
            import onnxruntime

            with self._lock:
                session = self._sessions.get(batch)
                if session is None:
                    options = onnxruntime.SessionOptions()
                    options.intra_op_num_threads = 1
                    options.inter_op_num_threads = 1
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    session = onnxruntime.InferenceSession(
                        _exported(self.network, batch), options, providers=["CPUExecutionProvider"]
                    )
                    self._sessions[batch] = session
        return session

    def forward(self, x: Tensor) -> Tensor:
        """As `SelfieSegmenter.forward`."""
        self.network.check_input(x)
        on_cpu = x.device.type == "cpu" and self.network.stem.weight.device.type == "cpu"
        if not on_cpu or x.dtype != torch.float32 or x.requires_grad or x.shape[0] == 0:
            return self.network(x)
        session = self._session(x.shape[0])
        image = x.detach().contiguous().numpy()
        (probability,) = session.run([_OUTPUT], {_INPUT: image})
        return torch.from_numpy(probability)


def on_onnxruntime(network: SelfieSegmenter) -> nn.Module:
    """The network wrapped to run in onnxruntime, or itself when that cannot be set up."""
    try:
        import onnxruntime  # noqa: F401

        return OnnxRuntimeSelfie(network)
    except Exception as error:  # an optional speed-up: the torch network still works
        log.warning("the selfie network runs in torch (onnxruntime unavailable: %s)", error)
        return network
