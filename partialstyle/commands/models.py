"""`partialstyle models` and `partialstyle train-style`: the model files on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from partialstyle.errors import PartialStyleError


def cmd_models(args: argparse.Namespace) -> None:
    from partialstyle import weights

    names = args.names or None
    if args.action == "fetch":
        _fetch(names or [])
        return
    if args.action == "prepare":
        weights.prepare(names)
        return
    statuses = weights.verify(names)
    for name, status in statuses.items():
        model = weights.entry(name)
        if args.action == "list":
            print(
                f"{name:18} {status:8} {model.description} [{model.package} {model.version}, "
                f"{model.license}]"
            )
        else:
            print(f"{name:18} {status}")
    if args.action == "verify" and any(status != "ready" for status in statuses.values()):
        raise PartialStyleError(f"some models are not ready; {weights.PREPARE_HINT}")


def _fetch(names: list[str]) -> None:
    """Weights that live on other hosts: downloaded on request, never by install."""
    from partialstyle import weights

    if not names:
        raise PartialStyleError("name what to fetch: `partialstyle models fetch johnson`")
    for name in names:
        if name == "johnson":
            from partialstyle.weights.fetch_johnson import fetch_johnson

            for path in fetch_johnson(weights.models_dir() / "johnson"):
                print(f"johnson:{path.stem} -> {path}")
        elif name.startswith("yolact"):
            from partialstyle.weights.fetch_yolact import fetch_yolact

            path = fetch_yolact(name.replace("-", "_"), weights.models_dir() / "yolact")
            print(f"{name} -> {path}")
        else:
            raise PartialStyleError(
                f"nothing called {name!r} to fetch; try johnson or yolact-resnet50 "
                "(also yolact-base, yolact-im700, yolact-darknet53, yolact-plus-base, "
                "yolact-plus-resnet50)"
            )


def cmd_train_style(args: argparse.Namespace) -> None:
    from partialstyle import weights
    from partialstyle.style.train_style import train_style

    if not args.style_image.is_file():
        raise PartialStyleError(f"style picture {args.style_image} does not exist")
    if not args.dataset.is_dir():
        raise PartialStyleError(f"dataset folder {args.dataset} does not exist")
    name = args.name or args.style_image.stem
    out = weights.models_dir() / "johnson" / f"{name}.pth"
    train_style(
        args.style_image,
        args.dataset,
        out,
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
    )
    print(f"wrote {out}; use it as johnson:{name}")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """`models` and `train-style`."""
    models = commands.add_parser("models", help="list, prepare or verify model files")
    models.add_argument("action", choices=["list", "prepare", "verify", "fetch"])
    models.add_argument("names", nargs="*", help="models (default: all); for fetch: johnson")
    models.set_defaults(run=cmd_models)

    train = commands.add_parser("train-style", help="train a Johnson network for a picture")
    train.add_argument("style_image", type=Path)
    train.add_argument("--dataset", type=Path, required=True, help="folder of training photos")
    train.add_argument("--name", help="network name (default: the picture's file name)")
    train.add_argument("--epochs", type=int, default=2)
    train.add_argument("--image-size", type=int, default=256)
    train.add_argument("--batch-size", type=int, default=4)
    train.set_defaults(run=cmd_train_style)
