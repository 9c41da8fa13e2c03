"""How close the style network comes to what this machine can do.

The machine's own peak is measured, not looked up: a large matrix multiply in float32 and,
where the CPU has bfloat16 dot products, in bfloat16 (the precision the style network runs
in there). The network's arithmetic is counted from its convolutions, so its share of the
peak says how much of its time is arithmetic and how much is memory traffic and overhead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from partialstyle.style.multistyle import MultiStyleNet
from partialstyle.style.names import NUM_MULTISTYLE

_MATMUL_SIDE = 2048


def matmul_gflops(dtype: torch.dtype, device: torch.device, repeats: int = 5) -> float:
    """Best GFLOP/s of a 2048² matrix multiply in `dtype` (all of torch's threads)."""
    a = torch.rand(_MATMUL_SIDE, _MATMUL_SIDE, device=device).to(dtype)
    b = torch.rand(_MATMUL_SIDE, _MATMUL_SIDE, device=device).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * _MATMUL_SIDE**3 / best / 1e9


def machine_peak(device: torch.device) -> dict[str, float]:
    """Measured matrix-multiply GFLOP/s: float32 always, bfloat16 too (on a CPU without
    bfloat16 dot products it is emulated and slow, which the figure then shows)."""
    with torch.inference_mode():
        return {
            "fp32": round(matmul_gflops(torch.float32, device), 1),
            "bf16": round(matmul_gflops(torch.bfloat16, device), 1),
        }


def conv_gflop(network: nn.Module, call: Callable[[], object]) -> float:
    """The convolution arithmetic of one ``call`` through ``network``'s nn.Conv2d layers, GFLOP."""
    total = [0]

    def count(conv: nn.Conv2d, inputs: object, output: torch.Tensor) -> None:
        kernel = conv.kernel_size[0] * conv.kernel_size[1]
        pixels = output.shape[0] * output.shape[-2] * output.shape[-1]
        total[0] += 2 * conv.in_channels * conv.out_channels * kernel * pixels // conv.groups

    hooks = [
        layer.register_forward_hook(count)
        for layer in network.modules()
        if isinstance(layer, nn.Conv2d)
    ]
    try:
        with torch.inference_mode():
            call()
    finally:
        for hook in hooks:
            hook.remove()
    return total[0] / 1e9


def style_network_gflop(height: int, width: int) -> float:
    """The 26-style network's convolution arithmetic on a height×width frame, in GFLOP
    (counted on the plain network's layers; weights do not matter for the count)."""
    network = MultiStyleNet().eval()
    weights = torch.zeros(1, NUM_MULTISTYLE)
    weights[0, 0] = 1.0
    return conv_gflop(network, lambda: network(torch.rand(1, 3, height, width), weights))
