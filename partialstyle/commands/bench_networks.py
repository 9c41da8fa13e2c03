"""`partialstyle bench`'s network table: each network alone on one frame, on one thread (OBS's
default, which leaves the other cores to OBS) and on all of torch's threads, against the
machine's matrix-multiply peak measured at the same thread count.

A network's share of the peak says how much of its time is arithmetic: the rest is memory
traffic (normalisation, padding, layout changes) and per-call overhead.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from partialstyle.commands.bench_machine import conv_gflop, matmul_gflops, style_network_gflop


def _johnson(device: torch.device, fast: bool = True) -> nn.Module:
    """A Johnson network of the real architecture with random weights (timing only), on the
    fast path as loaded networks are, or on plain ops."""
    from partialstyle.style.johnson import TransformerNet

    torch.manual_seed(0)
    network = TransformerNet().to(device).eval().requires_grad_(False)
    return network.set_precision("auto") if fast else network


def network_calls(device: torch.device, frame: np.ndarray, threads: int) -> dict[str, tuple]:
    """name -> (call, GFLOP) for every network that has a time of its own in a frame."""
    from partialstyle.commands.bench import _onnxruntime_style
    from partialstyle.segment.selfie import segment_person
    from partialstyle.weights.model_cache import load_model

    size = (frame.shape[0], frame.shape[1])
    rgb = torch.from_numpy(frame).to(device)
    image = rgb.permute(2, 0, 1)[None].float().div(255.0)
    network = load_model("multistyle26", device)
    segmenter = load_model("selfie-landscape", device)
    arbitrary = load_model("arbitrary", device)
    johnson = _johnson(device)
    one = torch.zeros(1, 26, device=device)
    one[0, 19] = 1.0
    two = torch.zeros(2, 26, device=device)
    two[0, 25], two[1, 19] = 1.0, 1.0
    with torch.inference_mode():
        person = segment_person(segmenter, rgb, size)
        masks = torch.stack([1.0 - person, person])[None]
        vector = arbitrary.style_vector(rgb.flip(1).contiguous())[None]
    style_gflop = style_network_gflop(*size)
    calls = {
        "multistyle26": (lambda: network(image, one), style_gflop),
        "multistyle26_2_regions": (lambda: network(image, two, masks), style_gflop),
    }
    run_onnx = _onnxruntime_style(threads) if device.type == "cpu" else None
    if run_onnx is not None:
        array = image.cpu().numpy()
        calls["onnxruntime_multistyle26"] = (lambda: run_onnx(array), style_gflop)
    plain_arbitrary = lambda: arbitrary.transformer(image, vector)  # noqa: E731
    calls["arbitrary"] = (
        lambda: arbitrary.stylize(image, vector),
        conv_gflop(arbitrary.transformer, plain_arbitrary),
    )
    # The fast path calls no nn.Conv2d: its twin on plain ops has the same arithmetic.
    plain = _johnson(device, fast=False)
    calls["johnson"] = (lambda: johnson(image), conv_gflop(plain, lambda: plain(image)))
    # On the CPU the loaded segmenter runs in onnxruntime; its torch network is the one the
    # arithmetic is counted on, and is timed too for the comparison.
    reference = getattr(segmenter, "network", segmenter)
    segment_gflop = conv_gflop(reference, lambda: segment_person(reference, rgb, size))
    calls["segmentation"] = (lambda: segment_person(segmenter, rgb, size), segment_gflop)
    if reference is not segmenter:
        calls["segmentation_torch"] = (
            lambda: segment_person(reference, rgb, size),
            segment_gflop,
        )
    return calls


def network_benchmarks(
    device: torch.device, repeats: int, frame: np.ndarray, thread_counts: tuple[int, ...]
) -> dict:
    """Per network: GFLOP and, per thread count, ms and share of that thread count's peak
    (the better of the fp32 and bf16 matrix multiply: what this machine can do at best)."""
    from partialstyle.commands.bench import time_interleaved

    previous = torch.get_num_threads()
    results: dict = {"peak_gflops": {}, "networks": {}}
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                peak = max(
                    matmul_gflops(dtype, device) for dtype in (torch.float32, torch.bfloat16)
                )
            calls = network_calls(device, frame, threads)
            with torch.inference_mode():
                timings = time_interleaved({name: c for name, (c, _) in calls.items()}, repeats)
            results["peak_gflops"][threads] = round(peak, 1)
            for name, ms in timings.items():
                gflop = calls[name][1]
                row = results["networks"].setdefault(name, {"gflop": round(gflop, 2)})
                row[threads] = {
                    "ms": round(ms, 1),
                    "share_of_peak": round(gflop / ms * 1000.0 / peak, 3),
                }
    finally:
        torch.set_num_threads(previous)
    return results


def print_networks(results: dict, size: str = "640x360") -> None:
    """The table: one column per thread count."""
    counts = list(results["peak_gflops"])
    print(f"\nnetworks alone at {size} (share of the matrix-multiply peak at that thread count)")
    peaks = "".join(f"  {results['peak_gflops'][t]:8.0f} GFLOP/s peak" for t in counts)
    header = "".join(f"  {f'{t} thread' + ('s' if t > 1 else ''):>22}" for t in counts)
    print(f"  {'':26} {'GFLOP':>6}{header}")
    print(f"  {'':26} {'':>6}{peaks}")
    for name, row in results["networks"].items():
        cells = "".join(
            f"  {row[t]['ms']:9.1f} ms {row[t]['share_of_peak']:8.0%}" if t in row else " " * 24
            for t in counts
        )
        print(f"  {name:26} {row['gflop']:6.2f}{cells}")
