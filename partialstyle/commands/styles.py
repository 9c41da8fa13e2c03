"""`partialstyle styles`: every style by name, or a contact sheet of them on one photo."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_styles(args: argparse.Namespace) -> None:
    from partialstyle.style.kinds import KINDS

    if args.sheet is None:
        for kind in KINDS:
            for line in kind.listing():
                print(line)
        return
    from partialstyle.io import (
        check_not_the_input,
        check_output_path,
        check_picture,
        read_frame,
        write_image,
    )

    check_output_path(args.sheet)
    for picture in [args.photo, *(args.picture or [])]:
        if picture is not None:
            check_not_the_input(picture, args.sheet)
    photo = read_frame(args.photo or Path(__file__).parents[1] / "data" / "astronaut.jpg")
    for picture in args.picture or []:
        check_picture(picture, "style picture", reduce=True)
    pictures = [str(path) for path in args.picture or []]

    from partialstyle.commands.sheet import contact_sheet  # torch: only once the files are fine
    from partialstyle.device import resolve_device

    write_image(args.sheet, contact_sheet(photo, resolve_device(args.device), pictures=pictures))
    print(f"wrote {args.sheet}")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """`styles`."""
    styles = commands.add_parser("styles", help="list styles, or draw a contact sheet")
    styles.add_argument("--sheet", type=Path, help="write a contact sheet PNG")
    styles.add_argument("--photo", type=Path, help="photo for the sheet (default: astronaut)")
    styles.add_argument(
        "--picture", type=Path, action="append", help="add arbitrary:<picture> to the sheet"
    )
    styles.add_argument("--device", default="auto")
    styles.set_defaults(run=cmd_styles)
