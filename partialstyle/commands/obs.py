"""The `partialstyle obs setup|demo` subcommands, added to the main CLI's parser."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `obs` with `setup` and `demo` to the CLI; each sets `run(args)`."""
    obs = subparsers.add_parser("obs", help="use partialstyle in OBS Studio")
    commands = obs.add_subparsers(dest="obs_command", required=True)
    config_help = "OBS's configuration folder (default: this user's, e.g. ~/.config/obs-studio)"

    setup = commands.add_parser(
        "setup",
        help="add the Partial Style Transfer script to OBS's current scene collection",
        description="Adds obs_partialstyle.py to the scene collection OBS opens next. Close "
        "OBS first; every changed file is backed up.",
    )
    setup.add_argument("--obs-config", type=Path, help=config_help)
    setup.set_defaults(run=_run_setup)

    demo = commands.add_parser(
        "demo",
        help="open OBS with a demo scene: the webcam (or a sample clip) with the filter on it",
    )
    demo.add_argument("--obs-config", type=Path, help=config_help)
    demo.set_defaults(run=_run_demo)


def _run_setup(args: argparse.Namespace) -> None:
    from partialstyle.obs.setup import setup

    setup(args.obs_config)


def _run_demo(args: argparse.Namespace) -> None:
    from partialstyle.obs.setup import demo

    demo(args.obs_config)
