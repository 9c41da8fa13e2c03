"""Convert MediaPipe's selfie segmentation .tflite files into SelfieSegmenter weights (safetensors).

The converter walks the TFLite graph along the same path as `SelfieSegmenter.forward`: every step
looks for the one operator that consumes the current tensor, checks its type and options (strides,
padding, activation), and stores its fp16 weights under the module's state_dict name. At the end
every operator must have been visited and the last tensor must be the graph's output, so a file with
any other structure is refused instead of silently converted into wrong weights.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tflite
import torch
from safetensors.torch import save_file
from torch import nn

from partialstyle.errors import PartialStyleError
from partialstyle.segment.selfie import VARIANTS, DecoderStage, MobileNetV3Block, SelfieSegmenter

_OP_NAMES = {code: name for name, code in vars(tflite.BuiltinOperator).items() if name.isupper()}
_SAME, _VALID = tflite.Padding.SAME, tflite.Padding.VALID
_TRANSPOSE_CONV_OP = "Convolution2DTransposeBias"
# MediaPipe's transposed conv options: raw little-endian int32 padding, stride_w, stride_h, where
# padding uses TfLitePadding from the C API (1 = SAME).
_TRANSPOSE_CONV_OPTIONS = (1, 2, 2)


class SelfieGraphError(PartialStyleError):
    """The .tflite file is not one of the MediaPipe selfie segmentation models this code knows."""


class _Op:
    """One TFLite operator, with its name resolved (builtin or custom)."""

    def __init__(self, index: int, op: tflite.Operator, name: str) -> None:
        self.index = index
        self.raw = op
        self.name = name
        self.inputs = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
        self.outputs = [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []

    def options(self, options_class: type) -> object:
        table = self.raw.BuiltinOptions()
        if table is None:
            raise SelfieGraphError(f"operator {self.index} ({self.name}) has no options")
        options = options_class()
        options.Init(table.Bytes, table.Pos)
        return options


class SelfieGraphWalker:
    """Reads weights out of the TFLite graph by following the data flow of SelfieSegmenter."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise SelfieGraphError(f"expected 1 subgraph, found {self.model.SubgraphsLength()}")
        self.graph = self.model.Subgraphs(0)
        self.ops = [self._read_op(i) for i in range(self.graph.OperatorsLength())]
        self.producer = {t: op for op in self.ops for t in op.outputs}
        self.consumers: dict[int, list[_Op]] = {}
        for op in self.ops:
            for t in op.inputs:
                self.consumers.setdefault(t, []).append(op)
        self.visited: set[int] = set()
        self.state: dict[str, torch.Tensor] = {}

    def _read_op(self, index: int) -> _Op:
        op = self.graph.Operators(index)
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = _OP_NAMES.get(builtin, f"builtin {builtin}")
        if name == "CUSTOM":
            name = (code.CustomCode() or b"").decode()
        return _Op(index, op, name)

    # -- tensors -------------------------------------------------------------------------------

    def shape(self, tensor: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.graph.Tensors(tensor).ShapeAsNumpy())

    def constant(self, tensor: int) -> np.ndarray:
        """A constant tensor's values; fp16 weights behind DEQUANTIZE come back as float32."""
        if tensor in self.producer:
            op = self.producer[tensor]
            if op.name != "DEQUANTIZE":
                raise SelfieGraphError(
                    f"tensor {tensor} should be a constant, but {op.name} makes it"
                )
            source = self.constant(op.inputs[0])
            if source.dtype != np.float16:
                raise SelfieGraphError(
                    f"DEQUANTIZE {op.index} reads {source.dtype}, expected float16"
                )
            self.visited.add(op.index)
            return source.astype(np.float32)
        t = self.graph.Tensors(tensor)
        dtypes = {
            tflite.TensorType.FLOAT16: np.float16,
            tflite.TensorType.FLOAT32: np.float32,
            tflite.TensorType.INT32: np.int32,
        }
        if t.Type() not in dtypes:
            raise SelfieGraphError(f"constant {t.Name().decode()} has unsupported type {t.Type()}")
        buffer = self.model.Buffers(t.Buffer())
        if buffer.DataLength():
            raw = buffer.DataAsNumpy().tobytes()
        elif buffer.Offset() > 1:
            raw = self.data[buffer.Offset() : buffer.Offset() + buffer.Size()]
        else:
            raise SelfieGraphError(
                f"tensor {t.Name().decode()} should be a constant but has no data"
            )
        return np.frombuffer(raw, dtype=dtypes[t.Type()]).reshape(self.shape(tensor))

    # -- operators -----------------------------------------------------------------------------

    def consumer(self, name: str, *inputs: int) -> _Op:
        """The single operator of type `name` whose activation inputs are exactly `inputs`."""
        wanted = sorted(inputs)
        found = [
            op
            for op in self.consumers.get(inputs[0], [])
            if op.name == name and sorted(t for t in op.inputs if t in wanted) == wanted
        ]
        if len(found) != 1:
            raise SelfieGraphError(
                f"expected one {name} reading tensor(s) {list(inputs)}, found {len(found)}"
            )
        op = found[0]
        if op.index in self.visited:
            raise SelfieGraphError(f"operator {op.index} ({name}) is reached twice")
        self.visited.add(op.index)
        return op

    def unary(self, name: str, x: int) -> int:
        return self.consumer(name, x).outputs[0]

    def binary(self, name: str, a: int, b: int) -> int:
        op = self.consumer(name, a, b)
        if op.options(
            tflite.AddOptions if name == "ADD" else tflite.MulOptions
        ).FusedActivationFunction():
            raise SelfieGraphError(
                f"operator {op.index} ({name}) has an unexpected fused activation"
            )
        return op.outputs[0]

    def conv(self, x: int, module: nn.Conv2d, prefix: str) -> int:
        """A CONV_2D or DEPTHWISE_CONV_2D matching `module`; its weights go to `prefix`."""
        depthwise = module.groups > 1
        op = self.consumer("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", x)
        if op.inputs[0] != x or len(op.inputs) != 3:
            raise SelfieGraphError(
                f"operator {op.index} ({op.name}) is not a conv of the expected input"
            )
        opts = op.options(tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
        stride = module.stride[0]
        padding_ok = opts.Padding() == _SAME or (
            module.kernel_size[0] == 1 and opts.Padding() == _VALID
        )
        if (
            (opts.StrideH(), opts.StrideW()) != (stride, stride)
            or (opts.DilationHFactor(), opts.DilationWFactor()) != (1, 1)
            or opts.FusedActivationFunction() != tflite.ActivationFunctionType.NONE
            or not padding_ok
            or (depthwise and opts.DepthMultiplier() != 1)
        ):
            raise SelfieGraphError(f"operator {op.index} ({op.name}) has unexpected options")
        kernel = torch.from_numpy(self.weights(op.inputs[1]))
        # TFLite kernels: conv OHWI -> OIHW; depthwise 1HWC -> C1HW.
        kernel = kernel.permute(3, 0, 1, 2) if depthwise else kernel.permute(0, 3, 1, 2)
        self.store(prefix, kernel, self.weights(op.inputs[2]))
        return op.outputs[0]

    def weights(self, tensor: int) -> np.ndarray:
        """A float32 copy of a kernel or bias constant."""
        values = self.constant(tensor)
        if values.dtype != np.float32:
            raise SelfieGraphError(f"weight tensor {tensor} is {values.dtype}, expected float")
        return values.copy()

    def store(self, prefix: str, weight: torch.Tensor, bias: np.ndarray) -> None:
        self.state[f"{prefix}.weight"] = weight.contiguous()
        self.state[f"{prefix}.bias"] = torch.from_numpy(bias).contiguous()

    def global_mean(self, x: int) -> int:
        """AVERAGE_POOL_2D over the whole map (general model) or MEAN over H, W (landscape)."""
        _, height, width, _ = self.shape(x)
        pools = [op for op in self.consumers.get(x, []) if op.name in ("AVERAGE_POOL_2D", "MEAN")]
        if len(pools) != 1:
            raise SelfieGraphError(f"expected one global pool of tensor {x}, found {len(pools)}")
        op = self.consumer(pools[0].name, x)
        if op.name == "AVERAGE_POOL_2D":
            opts = op.options(tflite.Pool2DOptions)
            ok = (opts.FilterHeight(), opts.FilterWidth(), opts.Padding()) == (
                height,
                width,
                _VALID,
            )
            ok = ok and opts.FusedActivationFunction() == tflite.ActivationFunctionType.NONE
        else:
            ok = sorted(self.constant(op.inputs[1]).tolist()) == [1, 2]
            ok = ok and op.options(tflite.ReducerOptions).KeepDims()
        if not ok:
            raise SelfieGraphError(f"operator {op.index} ({op.name}) is not a global average")
        return op.outputs[0]

    def upsample2x(self, x: int) -> int:
        op = self.consumer("RESIZE_BILINEAR", x)
        opts = op.options(tflite.ResizeBilinearOptions)
        _, height, width, _ = self.shape(x)
        size = self.constant(op.inputs[1]).tolist()
        if opts.AlignCorners() or not opts.HalfPixelCenters() or size != [2 * height, 2 * width]:
            raise SelfieGraphError(f"operator {op.index} is not a half-pixel 2x bilinear upsample")
        return op.outputs[0]

    def transposed_conv(self, x: int, module: nn.ConvTranspose2d, prefix: str) -> int:
        op = self.consumer(_TRANSPOSE_CONV_OP, x)
        raw = op.raw.CustomOptionsAsNumpy().tobytes() if op.raw.CustomOptionsLength() else b""
        if len(raw) != 12 or struct.unpack("<3i", raw) != _TRANSPOSE_CONV_OPTIONS:
            raise SelfieGraphError(
                f"operator {op.index} is not a SAME 2x2 stride-2 transposed conv"
            )
        # OHWI with O = output channels; torch wants (in, out, kH, kW), unflipped.
        kernel = torch.from_numpy(self.weights(op.inputs[1])).permute(3, 0, 1, 2)
        self.store(prefix, kernel, self.weights(op.inputs[2]))
        return op.outputs[0]

    def check_all_visited(self) -> None:
        missed = [f"{op.index} {op.name}" for op in self.ops if op.index not in self.visited]
        if missed:
            raise SelfieGraphError(
                f"{len(missed)} operators are not part of the expected graph: {missed[:5]}"
            )

    # -- the network, in the order of SelfieSegmenter.forward ----------------------------------

    def squeeze_excite_gate(self, source: int, module: nn.Module, prefix: str) -> int:
        """The gate sigmoid(expand(relu(reduce(mean(source))))), before it multiplies anything."""
        g = self.global_mean(source)
        g = self.unary("RELU", self.conv(g, module.reduce, f"{prefix}.reduce"))
        return self.unary("LOGISTIC", self.conv(g, module.expand, f"{prefix}.expand"))

    def inverted_residual(self, x: int, block: MobileNetV3Block, prefix: str) -> int:
        act = "RELU" if isinstance(block.expand_act, nn.ReLU) else "HARD_SWISH"
        y = self.unary(act, self.conv(x, block.expand, f"{prefix}.expand"))
        y = self.unary(act, self.conv(y, block.depthwise, f"{prefix}.depthwise"))
        if not isinstance(block.se, nn.Identity):
            y = self.binary("MUL", y, self.squeeze_excite_gate(y, block.se, f"{prefix}.se"))
        out = self.conv(y, block.project, f"{prefix}.project")
        return self.binary("ADD", out, x) if block.use_residual else out

    def decoder_stage(self, skip: int, previous: int, stage: DecoderStage, prefix: str) -> int:
        up = self.conv(self.upsample2x(previous), stage.project, f"{prefix}.project")
        fused_sum = self.binary("ADD", skip, up)
        gate = self.squeeze_excite_gate(fused_sum, stage.skip_gate, f"{prefix}.skip_gate")
        fused = self.binary("ADD", self.binary("MUL", skip, gate), up)
        refined = self.unary("RELU", self.conv(fused, stage.conv, f"{prefix}.conv"))
        detail = self.unary("RELU", self.conv(refined, stage.depthwise, f"{prefix}.depthwise"))
        return self.binary("ADD", refined, detail)

    def walk(self, net: SelfieSegmenter) -> None:
        """Collect every weight of `net` from the graph, checking the structure on the way."""
        inputs, outputs = self.graph.InputsAsNumpy(), self.graph.OutputsAsNumpy()
        if len(inputs) != 1 or len(outputs) != 1:
            raise SelfieGraphError("expected a graph with one input and one output")
        x = int(inputs[0])
        e0 = self.unary("HARD_SWISH", self.conv(x, net.stem, "stem"))
        e1 = self.inverted_residual(e0, net.stage1, "stage1")
        e2 = e1
        for i, block in enumerate(net.stage2):
            e2 = self.inverted_residual(e2, block, f"stage2.{i}")
        e3 = e2
        for i, block in enumerate(net.stage3):
            e3 = self.inverted_residual(e3, block, f"stage3.{i}")
        features = self.unary("RELU", self.conv(e3, net.head.conv, "head.conv"))
        gate = self.unary("LOGISTIC", self.conv(self.global_mean(e3), net.head.gate, "head.gate"))
        d = self.binary("MUL", features, gate)
        d = self.decoder_stage(e2, d, net.decode3, "decode3")
        d = self.decoder_stage(e1, d, net.decode2, "decode2")
        d = self.decoder_stage(e0, d, net.decode1, "decode1")
        mask = self.unary("LOGISTIC", self.transposed_conv(d, net.to_mask, "to_mask"))
        if mask != int(outputs[0]):
            raise SelfieGraphError("the walk did not end at the graph's output")
        self.check_all_visited()


def detect_variant(walker: SelfieGraphWalker) -> str:
    """The variant whose input size matches the graph's 1 x H x W x 3 input."""
    shape = walker.shape(int(walker.graph.InputsAsNumpy()[0]))
    for variant, (height, width) in VARIANTS.items():
        if shape == (1, height, width, 3):
            return variant
    raise SelfieGraphError(f"input shape {list(shape)} is not a known selfie model input")


def _write_atomically(dest: Path, write: Callable[[Path], None]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name, suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; model files are ordinary readable files
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def convert_selfie(tflite_path: Path, dest: Path) -> None:
    """Convert one MediaPipe selfie .tflite to a safetensors file that load_weights reads.

    The output is byte-for-byte reproducible and its metadata records the variant. Raises
    PartialStyleError if the file is missing or is not the expected graph.
    """
    tflite_path, dest = Path(tflite_path), Path(dest)
    try:
        data = tflite_path.read_bytes()
    except OSError as error:
        raise PartialStyleError(f"cannot read {tflite_path}: {error.strerror}") from error
    try:
        walker = SelfieGraphWalker(data)
        variant = detect_variant(walker)
        net = SelfieSegmenter(variant)
        walker.walk(net)
    except SelfieGraphError as error:
        raise SelfieGraphError(f"{tflite_path} is not a MediaPipe selfie model: {error}") from error
    except Exception as error:  # the flatbuffer reader fails in many ways on garbage input
        raise SelfieGraphError(
            f"{tflite_path} is not a readable .tflite file ({error!r})"
        ) from error
    expected = net.state_dict()
    for name, value in expected.items():
        got = walker.state.get(name)
        if got is None or got.shape != value.shape:
            found = None if got is None else list(got.shape)
            raise SelfieGraphError(
                f"{tflite_path}: weight {name} should have shape {list(value.shape)}, found {found}"
            )
    # One metadata key only: safetensors writes metadata from a hash map, so the order of several
    # keys (and with it the file's bytes) changes from run to run.
    metadata = {"variant": variant}
    tensors = {name: walker.state[name] for name in sorted(expected)}
    _write_atomically(dest, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
