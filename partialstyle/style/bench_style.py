"""Time the torch 26-style path against onnxruntime on the source ONNX (for `partialstyle bench`).

Contenders run interleaved, frame after frame, and the median is reported, so load from
other processes hits all of them alike and the ratios stay meaningful on a busy machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from partialstyle.style.multistyle import NUM_STYLES, MultiStyleNet

DEFAULT_SIZES = ((640, 360), (1280, 720))
_SETTLE_SECONDS = 0.05


def bench_style(
    model_path: Path,
    onnx_path: Path | None = None,
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES,
    threads: int = 2,
    repeats: int = 10,
    precision: str = "auto",
) -> dict:
    """Milliseconds per frame and fps for 1 and 2 regions (and onnxruntime if given).

    ``sizes`` are (width, height); ``precision`` is as for ``MultiStyleNet.load`` and the
    one actually used is reported. Returns ``{"threads", "precision", "sizes": {"WxH":
    {"torch_ms", "torch_fps", "torch_2regions_ms", "torch_2regions_fps",
    "two_regions_relative_speed", and with onnx_path "onnxruntime_ms", "onnxruntime_fps",
    "speedup_vs_onnxruntime"}}}``.
    """
    if threads < 1 or repeats < 1:
        raise ValueError("threads and repeats must be at least 1")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = MultiStyleNet.load(model_path, precision=precision)
        session = _onnx_session(onnx_path, threads) if onnx_path is not None else None
        results = {}
        for width, height in sizes:
            contenders = _contenders(net, session, width, height)
            times = _interleaved_median_ms(contenders, repeats)
            results[f"{width}x{height}"] = _summary(times)
    finally:
        torch.set_num_threads(previous_threads)
    used = "bf16" if net.compute_dtype == torch.bfloat16 else "fp32"
    return {"threads": threads, "precision": used, "sizes": results}


def _contenders(net: MultiStyleNet, session, width: int, height: int) -> dict[str, Callable]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, height, width, generator=generator)
    one_style = torch.zeros(1, NUM_STYLES)
    one_style[0, 3] = 1.0
    two_styles = torch.zeros(2, NUM_STYLES)
    two_styles[0, 3], two_styles[1, 11] = 1.0, 1.0
    person = torch.zeros(1, 1, height, width)
    person[..., height // 4 :, width // 3 : 2 * width // 3] = 1.0  # a rough person shape
    masks = torch.cat([person, 1.0 - person], dim=1)

    def one_region() -> None:
        with torch.inference_mode():
            net(image, one_style)

    def two_regions() -> None:
        with torch.inference_mode():
            net(image, two_styles, masks)

    contenders = {"torch": one_region, "torch_2regions": two_regions}
    if session is not None:
        # The source package pads to a multiple of 4 before calling the model.
        padded = torch.nn.functional.pad(image, [0, -width % 4, 0, -height % 4], mode="reflect")
        feed = {"image": padded.numpy(), "style_weights": one_style[0].numpy()}
        contenders["onnxruntime"] = lambda: session.run(None, feed)
    return contenders


def _interleaved_median_ms(contenders: dict[str, Callable], repeats: int) -> dict[str, float]:
    for run in contenders.values():  # warm up: first calls pay for allocation and JIT
        run()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for repeat in range(repeats):
        # Rotate the order: a runtime's worker threads keep spinning for a while after a
        # call and slow whatever runs next, so no contender may always follow the same one.
        # The pause lets those threads go to sleep before the next timing starts.
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            time.sleep(_SETTLE_SECONDS)
            start = time.perf_counter()
            contenders[name]()
            samples[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in samples.items()}


def _summary(ms: dict[str, float]) -> dict[str, float]:
    summary = {}
    for name, value in ms.items():
        summary[f"{name}_ms"] = round(value, 2)
        summary[f"{name}_fps"] = round(1000.0 / value, 2)
    summary["two_regions_relative_speed"] = round(ms["torch"] / ms["torch_2regions"], 3)
    if "onnxruntime" in ms:
        summary["speedup_vs_onnxruntime"] = round(ms["onnxruntime"] / ms["torch"], 3)
    return summary


def _onnx_session(onnx_path: Path, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("onnxruntime is not installed; pip install onnxruntime") from None
    if not Path(onnx_path).is_file():
        raise ValueError(f"ONNX model {onnx_path} not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
