"""The `partialstyle` command. Every user error ends as one line on stderr and exit code 2.

Each subcommand lives in a module of this folder that adds it with `add_commands`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from partialstyle.commands import doctor, models, obs, restyle, segment, styles
from partialstyle.errors import PartialStyleError, one_line

EXIT_USAGE = 2


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so partial outputs are removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(signum)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not the usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="partialstyle",
        description="Restyle people and backgrounds of images and video with neural art styles.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    for group in (restyle, segment, styles, models, doctor, obs):
        group.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:  # --help, or a usage error already printed
        return exit_request.code if isinstance(exit_request.code, int) else 0
    previous = _stop_on_signals()
    _quiet_library_logs()
    try:
        args.run(args)
    except (PartialStyleError, ValueError, OSError) as error:
        print(f"partialstyle: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("partialstyle: interrupted", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(f"partialstyle: stopped by {stop}", file=sys.stderr)
        return 128 + stop.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    return 0


def _quiet_library_logs() -> None:
    """Keep library notices off stderr, where a user expects at most our one line.

    torch.utils.cpp_extension logs "No CUDA runtime is found" when it is imported on a machine
    without CUDA (the CPU kernels are built with it).
    """
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def _stop_on_signals() -> dict[int, object]:
    """SIGTERM and SIGHUP unwind like Ctrl-C (cleaning up partial outputs), not kill at once.

    Returns the handlers they had, to put back. Only the main thread may set handlers.
    """
    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            previous[signum] = signal.signal(signum, _raise_stopped)
    return previous


if __name__ == "__main__":
    raise SystemExit(main())
