"""The benchmark runs and reports every stage (its numbers are checked by people, not tests)."""

import re

import pytest
import torch

from partialstyle.commands.bench import (
    flicker_benchmark,
    frame_size_benchmark,
    stage_benchmarks,
    time_interleaved,
    webcam_frame,
)
from partialstyle.commands.bench_networks import conv_gflop, network_benchmarks, print_networks


def test_time_interleaved_times_each_contender_in_bursts():
    """Every round runs each contender in one burst, warmed up for a while, the order
    rotating; the timed calls come last in each burst."""
    order = []
    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    timings = time_interleaved(calls, repeats=3)
    assert set(timings) == {"a", "b"} and all(ms > 0 for ms in timings.values())
    # Rounds ab, ba, ab: the second round's bursts join the first's and the third's.
    bursts = re.findall(r"a+|b+", "".join(order))
    assert [burst[0] for burst in bursts] == ["a", "b", "a", "b"]
    assert all(len(burst) > 3 for burst in bursts)  # warm-up calls for 0.1 s, then two timed


@pytest.mark.usefixtures("default_models")
def test_stage_benchmarks_cover_the_stages():
    results = stage_benchmarks(torch.device("cpu"), repeats=1, sizes=((72, 128),))
    row = results["128x72"]
    for stage in ("segmentation", "style_1_region", "style_2_regions", "pipeline"):
        assert row[stage]["ms"] > 0 and row[stage]["fps"] > 0
    assert row["torch_vs_onnxruntime_throughput"] > 0
    pipeline, network = row["pipeline"]["ms"], row["style_2_regions"]["ms"]
    assert row["pipeline_minus_network_vs_network"] == pytest.approx(
        (pipeline - network) / network, abs=0.2
    )
    # Timed within the pipeline's frames: the network ran in each (else the share would be
    # infinite), and the rest takes time too.
    assert 0.0 < row["outside_network_vs_network"] < 100.0


@pytest.mark.usefixtures("default_models")
def test_flicker_benchmark_measures_both_settings():
    results = flicker_benchmark(torch.device("cpu"), frames=3)
    assert set(results) == {"input", "stabilize_0.0", "stabilize_0.8"}


@pytest.mark.usefixtures("default_models")
def test_frame_size_benchmark_reports_the_full_resolution_cost():
    results = frame_size_benchmark(torch.device("cpu"), repeats=1)
    small, large = results["1280x720"]["ms"], results["3840x2160"]["ms"]
    assert small > 0 and large > 0
    assert results["ratio_3840x2160_vs_1280x720"] == pytest.approx(large / small, rel=0.01)


def test_conv_gflop_counts_every_convolution():
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 4, 1))
    image = torch.rand(1, 3, 10, 20)
    expected = 2 * (3 * 8 * 9 + 8 * 4) * 10 * 20 / 1e9
    assert conv_gflop(network, lambda: network(image)) == pytest.approx(expected)


def test_network_benchmarks_report_each_network_per_thread_count(capsys):
    frame = webcam_frame(72, 128)
    results = network_benchmarks(torch.device("cpu"), repeats=1, frame=frame, thread_counts=(1, 2))
    assert set(results["peak_gflops"]) == {1, 2}
    names = {"multistyle26", "multistyle26_2_regions", "arbitrary", "johnson", "segmentation"}
    assert names <= set(results["networks"])
    for row in results["networks"].values():
        assert row["gflop"] > 0
        for threads in (1, 2):
            assert row[threads]["ms"] > 0 and 0 <= row[threads]["share_of_peak"] < 2
    print_networks(results)
    assert "2 threads" in capsys.readouterr().out
