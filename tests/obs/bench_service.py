"""Memory and throughput of the inference service with 1, 2 and 4 filter clients.

    .venv/bin/python tests/obs/bench_service.py [--seconds 20] [--clients 1 2 4]

Each client is a `RemoteProcessor` (what one OBS filter instance owns) in its own thread,
feeding 640×360 frames of a moving person in a loop, as the filter's worker does, with its own
styles and OBS's 30 fps frame interval. "shared" is the filter's setup (one process for every
client); "separate" gives every client a process of its own (the setup before issue 11), for
comparison in the same run. Memory is the inference processes' resident set (RSS) and their
proportional set (PSS: shared library pages split between the processes that map them).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

from partialstyle.obs.launch import venv_python
from partialstyle.obs.remote import InferenceService, RemoteProcessor
from partialstyle.obs.sample_clip import sample_frame

PYTHON = venv_python(Path(sys.prefix))
WIDTH, HEIGHT = 640, 360
FRAME_INTERVAL = 1 / 30
STYLES = [(8, 19), (1, 2), (20, 3), (12, 5)]


def frames(count: int = 8) -> list[np.ndarray]:
    """A person swaying left and right: flow has something to carry."""
    alpha = np.full((HEIGHT, WIDTH, 1), 255, np.uint8)
    return [np.dstack([sample_frame(WIDTH, HEIGHT, shift=4 * i), alpha]) for i in range(count)]


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return fields["Rss"], fields["Pss"]


def run(clients: int, shared: bool, seconds: float) -> dict:
    service = InferenceService(PYTHON) if shared else None
    processors = [
        RemoteProcessor(
            PYTHON,
            {"person_style": f"multistyle:{p}", "background_style": f"multistyle:{b}"},
            service=service or InferenceService(PYTHON),
        )
        for p, b in STYLES[:clients]
    ]
    clip = frames()
    counts = [0] * clients
    stop = threading.Event()

    def feed(index: int) -> None:
        processor, number = processors[index], 0
        while not stop.is_set():
            processor.process(clip[number % len(clip)])
            number += 1
            counts[index] += 1

    try:
        for processor in processors:
            processor.start()
            processor.pace(0.0, FRAME_INTERVAL)
        threads = [threading.Thread(target=feed, args=(i,), daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(min(5.0, seconds / 2))  # warm up: first style runs, kernels, caches
        before = list(counts)
        styles_before = [p.stylizations for p in processors]
        time.sleep(seconds)
        frames_done = [c - b for c, b in zip(counts, before, strict=True)]
        styles_done = [p.stylizations - s for p, s in zip(processors, styles_before, strict=True)]
        pids = sorted({p.pid for p in processors})
        memory = [memory_kb(pid) for pid in pids]
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        for processor in processors:
            processor.close()
    return {
        "clients": clients,
        "setup": "shared" if shared else "separate",
        "processes": len(pids),
        "rss_mb": sum(rss for rss, _ in memory) / 1024,
        "pss_mb": sum(pss for _, pss in memory) / 1024,
        "fps_each": [round(n / seconds, 2) for n in frames_done],
        "fps_total": sum(frames_done) / seconds,
        "styles_per_s_total": sum(styles_done) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--setups", nargs="+", default=["shared", "separate"])
    args = parser.parse_args()
    print("clients setup    procs  RSS MB  PSS MB  frames/s total (each)       styles/s")
    for clients in args.clients:
        for setup in args.setups:
            if setup == "separate" and clients == 1:
                continue  # the same as shared
            row = run(clients, setup == "shared", args.seconds)
            print(
                f"{row['clients']:7d} {row['setup']:8s} {row['processes']:5d} "
                f"{row['rss_mb']:7.0f} {row['pss_mb']:7.0f}  "
                f"{row['fps_total']:6.2f} {str(row['fps_each']):20s} "
                f"{row['styles_per_s_total']:8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
