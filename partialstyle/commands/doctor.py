"""`partialstyle doctor` and `partialstyle bench`: this machine's setup and its speed."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys

from partialstyle.commands.options import thread_count
from partialstyle.errors import PartialStyleError


def obs_embedded_python() -> str | None:
    """The Python version ("3.11") that the installed OBS links, or None if unknown.

    Linux builds of OBS link libpython at build time, so `ldd` on the obs binary names it.
    """
    obs = shutil.which("obs")
    if obs is None or shutil.which("ldd") is None:
        return None
    try:
        listing = subprocess.run(["ldd", obs], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"libpython(\d+\.\d+)", listing)
    return found.group(1) if found else None


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def obs_version() -> str | None:
    obs = shutil.which("obs")
    if obs is None:
        return None
    try:
        output = subprocess.run([obs, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"(\d+\.\d+\.\d+)", output.stdout + output.stderr)
    return found.group(1) if found else None


def cmd_doctor(args: argparse.Namespace) -> None:
    import cv2
    import numpy as np
    import torch
    import torchvision

    from partialstyle import __version__, weights
    from partialstyle.device import resolve_device

    obs_python = obs_embedded_python()
    print(f"partialstyle   {__version__}")
    print(f"python         {sys.version.split()[0]} ({sys.executable})")
    print(f"torch          {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"numpy          {np.__version__}, opencv {cv2.__version__}")
    print(f"device         {resolve_device('auto')} ({torch.get_num_threads()} CPU threads)")
    print(f"models         {weights.models_dir()}")
    statuses = weights.verify()
    for name, status in statuses.items():
        print(f"  {name:16} {status}")
    if statuses.get("multistyle26") == "ready":
        from partialstyle.weights.model_cache import load_model

        network = load_model("multistyle26", resolve_device("auto"))
        precision = "bfloat16" if network.compute_dtype == torch.bfloat16 else "float32"
        print(f"style network  runs in {precision} here")
    from partialstyle.style import fused_norm

    fused_norm.kernels(wait=True)
    kernel = fused_norm.status()
    note = "" if kernel == "ready" else " (plain torch ops are used: slower, same results)"
    print(f"fused kernel   {kernel}{note}")
    print(f"OBS            {obs_version() or 'not found'}")
    if obs_python is None:
        print("OBS python     unknown (OBS not found, or not a Linux build that links libpython)")
    elif obs_python == this_python():
        print(f"OBS python     {obs_python}: matches this environment")
    else:
        print(
            f"OBS python     {obs_python}: does NOT match this environment's "
            f"{this_python()}; rerun install/install.sh (it picks OBS's Python)"
        )
    broken = [f"{name} {status}" for name, status in statuses.items() if status != "ready"]
    if broken:
        raise PartialStyleError(f"models not ready ({', '.join(broken)}); {weights.PREPARE_HINT}")


def cmd_bench(args: argparse.Namespace) -> None:
    from partialstyle.commands.bench import run_benchmarks

    # With --json, standard output is the JSON alone (for programs); the tables, which show
    # progress through a long run, go to standard error.
    tables = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with tables:
        results = run_benchmarks(repeats=args.repeats, threads=args.threads, quick=args.quick)
    if args.json:
        print(json.dumps(results, indent=2))


def add_commands(commands: argparse._SubParsersAction) -> None:
    """`doctor` and `bench`."""
    doctor = commands.add_parser("doctor", help="versions, device, models, OBS's Python")
    doctor.set_defaults(run=cmd_doctor)

    bench = commands.add_parser("bench", help="speed of every stage on this machine")
    bench.add_argument(
        "--json", action="store_true", help="print the results as JSON (the tables go to stderr)"
    )
    bench.add_argument("--repeats", type=int, default=5)
    bench.add_argument("--threads", type=thread_count, default=None)
    bench.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    bench.set_defaults(run=cmd_bench)
