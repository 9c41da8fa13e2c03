"""Weight files on disk: where they live, what the manifest records, whether each is ready.

Every default model is a file made by `partialstyle models prepare` (see `prepare.py`) and
recorded in the committed manifest (`models/manifest.json`: source package, checksums, license,
converter). Reading a file into a network is `load.py`'s job; keeping loaded networks is
`model_cache.py`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from partialstyle.errors import ModelMissingError, PartialStyleError, one_line

PREPARE_HINT = "run `partialstyle models prepare`"
_PROJECT = Path(__file__).resolve().parents[2]  # the folder holding partialstyle/ and models/
_MANIFEST_FIX = "restore it from the project (git checkout models/manifest.json, or reinstall)"


@dataclass(frozen=True)
class SourceFile:
    """A file inside a package's wheel, with the sha256 it must have."""

    member: str
    sha256: str


@dataclass(frozen=True)
class ModelEntry:
    """One row of the manifest: converter(*source files, dest) makes `file`."""

    name: str
    description: str
    package: str
    version: str
    sources: tuple[SourceFile, ...]
    license: str
    converter: str
    file: str
    converted_sha256: str | None


def models_dir_setting() -> str | None:
    """`PARTIALSTYLE_MODELS`, the models folder a user chose (None: the project's own)."""
    return os.environ.get("PARTIALSTYLE_MODELS") or None


def models_dir() -> Path:
    """`PARTIALSTYLE_MODELS` if set, else the `models/` folder beside the package."""
    override = models_dir_setting()
    return Path(override) if override else _PROJECT / "models"


def manifest_path() -> Path:
    return _PROJECT / "models" / "manifest.json"


@cache
def manifest() -> dict[str, ModelEntry]:
    """The committed manifest; a damaged one is a one-line error that names the file."""
    path = manifest_path()
    try:
        data = json.loads(path.read_text())
        entries = {}
        for name, fields in data["models"].items():
            sources = tuple(SourceFile(**source) for source in fields.pop("sources"))
            entries[name] = ModelEntry(name=name, sources=sources, **fields)
    except OSError as error:
        raise PartialStyleError(
            f"cannot read the model manifest {path} ({error.strerror}); {_MANIFEST_FIX}"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        detail = one_line(error)
        raise PartialStyleError(
            f"the model manifest {path} is damaged ({type(error).__name__}: {detail}); "
            f"{_MANIFEST_FIX}"
        ) from None
    return entries


def entry(name: str) -> ModelEntry:
    try:
        return manifest()[name]
    except KeyError:
        known = ", ".join(manifest())
        raise PartialStyleError(f"unknown model {name!r}; known models: {known}") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_network_file(source: str) -> bool:
    """Whether a Johnson source names a checkpoint file rather than a network in
    models/johnson/ (`johnson:candy` vs `johnson:~/nets/candy.pth`)."""
    return source.endswith((".pth", ".model", ".pt")) or "/" in source or "\\" in source


def johnson_names() -> list[str]:
    """Names of the Johnson networks in models/johnson/ (fetched or trained)."""
    folder = models_dir() / "johnson"
    return sorted(path.stem for path in folder.glob("*.pth")) if folder.is_dir() else []


def model_status(name: str) -> str:
    """'ready', 'missing' or 'corrupt' (also a folder in its place) for a model's weight file."""
    model = entry(name)
    path = models_dir() / model.file
    if path.exists() and not path.is_file():
        return "corrupt"
    if not path.is_file():
        return "missing"
    if model.converted_sha256 and sha256_of(path) != model.converted_sha256:
        return "corrupt"
    return "ready"


MISSING = "is missing (not found: the file does not exist)"


def weights_error(path: Path, problem: str, fix: str = PREPARE_HINT) -> ModelMissingError:
    """The one error for a weight file that cannot be used: the file, what is wrong with it,
    and the command that makes it (one line: the CLI prints it, OBS logs it)."""
    return ModelMissingError(f"model file {path} {problem}; {fix}")


def model_path(name: str) -> Path:
    """The path of a ready model file, or the one-line error that says how to fix it."""
    model = entry(name)
    path = models_dir() / model.file
    status = model_status(name)
    if status == "missing":
        raise weights_error(path, MISSING)
    if status == "corrupt" and not path.is_file():
        raise weights_error(path, "is not a file", f"remove it, then {PREPARE_HINT}")
    if status == "corrupt":
        raise weights_error(path, "is corrupt (checksum mismatch)")
    return path


def verify(names: list[str] | None = None) -> dict[str, str]:
    """Status of each model file: ready, missing or corrupt."""
    return {name: model_status(name) for name in names or list(manifest())}
