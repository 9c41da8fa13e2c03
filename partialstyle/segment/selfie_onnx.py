"""The selfie network run by onnxruntime on the CPU.

The network is some sixty tiny layers (16 to 128 channels on a 144x256 input), so in torch
its time goes to per-operator overhead rather than arithmetic: 4.4 ms a frame on one thread
here, against 1.9 ms for onnxruntime on the same graph, exported from our own torch module at
load (about a second, once per process). Both give the same masks (within 1e-4); the torch
module stays the reference, runs on other devices and is the fallback when the export or
onnxruntime is unavailable.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings

import torch
from torch import Tensor, nn

from partialstyle.segment.selfie import SelfieSegmenter

log = logging.getLogger(__name__)

_INPUT, _OUTPUT = "image", "probability"


def _exported(network: SelfieSegmenter) -> bytes:
    """The network as an ONNX graph with a free batch size (float32, on the CPU)."""
    example = torch.zeros(1, 3, *network.input_size)
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
            dynamic_axes={_INPUT: {0: "batch"}, _OUTPUT: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return graph.getvalue()


class OnnxRuntimeSelfie(nn.Module):
    """A `SelfieSegmenter` whose CPU float32 forward runs in onnxruntime.

    It keeps the torch network as `network` (its parameters, device and `.to()` are this
    module's) and uses it for anything else. Its one session runs on one thread whatever
    torch's count: for sixty tiny layers a second thread costs more in hand-offs than it
    gains (3.3 against 3.0 ms a frame here, each after a two-thread style network). The session
    does not spin while idle, so it leaves the cores to OBS and the style networks.
    """

    def __init__(self, network: SelfieSegmenter) -> None:
        super().__init__()
        self.network = network
        self.variant = network.variant
        self.input_size = network.input_size
        self._graph = _exported(network)
        self._onnx_session = None
        self._lock = threading.Lock()
        self.train(network.training)

    def _session(self):
        session = self._onnx_session
        if session is None:
            import onnxruntime

            with self._lock:
                session = self._onnx_session
                if session is None:
                    options = onnxruntime.SessionOptions()
                    options.intra_op_num_threads = 1
                    options.inter_op_num_threads = 1
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    session = onnxruntime.InferenceSession(
                        self._graph, options, providers=["CPUExecutionProvider"]
                    )
                    self._onnx_session = session
        return session

    def forward(self, x: Tensor) -> Tensor:
        """As `SelfieSegmenter.forward`."""
        self.network.check_input(x)
        on_cpu = x.device.type == "cpu" and self.network.stem.weight.device.type == "cpu"
        if not on_cpu or x.dtype != torch.float32 or x.requires_grad:
            return self.network(x)
        session = self._session()
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
