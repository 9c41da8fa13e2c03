"""Download the four Johnson-style networks that pytorch/examples publishes (candy, mosaic,
rain_princess, udnie), so users get ready-made styles without training."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from partialstyle.errors import PartialStyleError
from partialstyle.weights.http_download import download
from partialstyle.weights.load import load_weights

# The archive fast_neural_style/download_saved_models.py fetches; it holds saved_models/*.pth.
SAVED_MODELS_URL = "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1"
PUBLISHED_STYLES = ("candy", "mosaic", "rain_princess", "udnie")


def fetch_johnson(dest_dir: Path, url: str = SAVED_MODELS_URL) -> list[Path]:
    """Put the published ``.pth`` checkpoints in ``dest_dir`` and return their paths, sorted.

    Already present checkpoints are kept without a download. Every extracted file is loaded once,
    so a damaged archive fails here with one clear line instead of later in a pipeline.
    """
    dest_dir = Path(dest_dir)
    present = [dest_dir / f"{name}.pth" for name in PUBLISHED_STYLES]
    if all(path.is_file() for path in present):
        return present

    archive = download(url, dest_dir / "saved_models.zip")
    try:
        extracted = _extract_checkpoints(archive, dest_dir)
    except zipfile.BadZipFile:
        archive.unlink()
        raise PartialStyleError(
            f"{url} did not give a zip archive; deleted it, try again"
        ) from None
    if not extracted:
        raise PartialStyleError(f"{archive} holds no .pth checkpoints; is {url} the right address?")
    for path in extracted:
        load_weights("johnson", path)
    archive.unlink()
    return extracted


def _extract_checkpoints(archive: Path, dest_dir: Path) -> list[Path]:
    """Copy every ``*.pth`` member to ``dest_dir`` by its bare file name (no paths from the zip)."""
    extracted = []
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            name = PurePosixPath(member.filename).name
            if member.is_dir() or not name.endswith(".pth") or name.startswith("."):
                continue
            target = dest_dir / name
            partial = target.with_name(name + ".partial")
            with bundle.open(member) as source, open(partial, "wb") as out:
                while block := source.read(1 << 20):
                    out.write(block)
            partial.replace(target)
            extracted.append(target)
    return sorted(extracted)
