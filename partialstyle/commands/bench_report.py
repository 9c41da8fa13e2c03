"""What `partialstyle bench` prints: its measurements as one table per part."""

from __future__ import annotations

from partialstyle.commands.bench_live import print_live
from partialstyle.commands.bench_networks import print_networks


def print_results(results: dict) -> None:
    """The results of `run_benchmarks` as the tables `partialstyle bench` prints."""
    peak = results["machine_peak_gflops"]
    precision = results["style_network_precision"]
    print(
        f"\nmachine peak (matrix multiply): {peak['fp32']:.0f} GFLOP/s fp32, "
        f"{peak['bf16']:.0f} GFLOP/s bf16; style network in {precision}, fused norm kernel "
        f"{results['fused_norm_kernel']}"
    )
    if "networks_640x360" in results:
        print_networks(results["networks_640x360"])
    used = peak["bf16"] if precision == "bfloat16" else peak["fp32"]
    for size, row in results["stages"].items():
        print(f"\n{size} processing size")
        share = row["style_1_region_gflops_per_s"] / used
        print(
            f"  style network: {row['style_network_gflop']} GFLOP, "
            f"{row['style_1_region_gflops_per_s']:.0f} GFLOP/s = {share:.0%} of the "
            f"{precision} peak"
        )
        _print_rows(row)
    print("\npipeline on a 1280x720 frame")
    for name, value in results["presets_1280x720"].items():
        print(
            f"  {name:22} {value['ms']:8.1f} ms  {value['fps']:6.2f} fps  "
            f"mean abs difference vs full 720p: {value['mean_abs_difference_vs_720']}"
        )
    print("\npipeline at 360-line processing by frame size")
    _print_rows(results["frame_sizes_at_360"])
    print("\nstyle kinds, whole frame at 640x360")
    for name, value in results["style_kinds_640x360"].items():
        print(f"  {name:22} {value['ms']:8.1f} ms  {value['fps']:6.2f} fps")
    flicker = results["flicker_static_clip"]
    print(
        "\nflicker on a static noisy clip (mean frame-to-frame difference): input "
        f"{flicker['input']}, output {flicker['stabilize_0.0']} without stabilization, "
        f"{flicker['stabilize_0.8']} with stabilize=0.8"
    )
    print("\nper-person styles, two people in a 1280x720 frame (360-line processing)")
    for name, value in results["per_person_1280x720"].items():
        print(f"  {name:22} {value['ms']:8.1f} ms  {value['fps']:6.2f} fps")
    print_live(results["live_640x360"])
    if results.get("yolact_550_on_640x360"):
        print("\nYOLACT at 550 on a 640x360 frame")
    for name, value in results.get("yolact_550_on_640x360", {}).items():
        print(f"  {name:22} {value['ms']:8.1f} ms  {value['fps']:6.2f} fps  ({value['weights']})")
    if "video_720p_peak_memory_mb" in results:
        print(
            "\npartialstyle video, 720p clip: peak memory",
            f"{results['video_720p_peak_memory_mb']} MB",
        )


def _print_rows(rows: dict) -> None:
    """Timings as "ms fps" lines, other figures (ratios) as plain numbers."""
    for name, value in rows.items():
        if isinstance(value, dict):
            print(f"  {name:22} {value['ms']:8.1f} ms  {value['fps']:6.2f} fps")
        else:
            print(f"  {name:34} {value:.3f}")
