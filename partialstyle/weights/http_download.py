"""Resumable HTTP(S) download of model files with a progress bar and integrity checks."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from partialstyle.errors import PartialStyleError

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 30
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_HTML_STARTS = (b"<!doctype html", b"<html", b"<?xml", b"<head")


def download(
    url: str, dest: Path, expected_size: int | None = None, sha256: str | None = None
) -> Path:
    """Fetch url to dest and return dest.

    Bytes go to dest + ".part" first and it is renamed only once complete and checked, so an
    interrupted download resumes with an HTTP Range request and a broken file never sits at
    dest. An existing dest that passes the checks is kept without a request.
    """
    dest = Path(dest)
    if dest.is_file() and _is_complete(dest, expected_size, sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    total = _fetch_to_part(url, part, expected_size)
    size = part.stat().st_size
    if total is not None and size != total:
        raise PartialStyleError(
            f"download of {url} stopped at {size} of {total} bytes; run the same command "
            "again to resume"
        )
    _check_file(part, url, expected_size, sha256)
    os.replace(part, dest)
    return dest


def _fetch_to_part(url: str, part: Path, expected_size: int | None) -> int | None:
    """Append the missing bytes to part; returns the full size the server announced, if any."""
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    if expected_size is not None and have == expected_size:
        return expected_size

    request = urllib.request.Request(url, headers={"User-Agent": "partialstyle"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            # The server has nothing past what we have: the .part is already whole (or stale;
            # the size and format checks that follow decide).
            return None
        raise PartialStyleError(
            f"cannot download {url}: HTTP {error.code} {error.reason}"
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise PartialStyleError(
            f"cannot download {url} ({reason}); check the internet connection, or fetch the "
            f"file elsewhere and put it at {part.with_suffix('')}"
        ) from error

    with response:
        total, resume = _announced_size(response, have)
        if not resume:
            have = 0
        if expected_size is not None and total is not None and total != expected_size:
            raise PartialStyleError(
                f"{url} is {total} bytes but {expected_size} were expected; the file on the "
                "server is not the one partialstyle knows"
            )
        mode = "ab" if resume else "wb"
        try:
            with (
                open(part, mode) as out,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=part.name.removesuffix(".part"),
                    leave=False,
                ) as progress,
            ):
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    progress.update(len(chunk))
        except (OSError, http.client.HTTPException) as error:  # reset, timeout, short read
            raise PartialStyleError(
                f"download of {url} was interrupted ({error}); run the same command again to resume"
            ) from error
    return total


def _announced_size(response, have: int) -> tuple[int | None, bool]:
    """(full file size if known, whether the server is resuming at byte `have`)."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match and int(match.group(1)) == have:
            return (int(match.group(3)) if match.group(3) != "*" else None), True
        raise PartialStyleError(
            f"server answered a resume request for {response.url} with an unexpected range "
            f"{response.headers.get('Content-Range')!r}"
        )
    length = response.headers.get("Content-Length")
    return (int(length) if length and length.isdigit() else None), False


def _check_file(path: Path, url: str, expected_size: int | None, sha256: str | None) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64).lstrip().lower()
    if size == 0 or head.startswith(_HTML_STARTS):
        path.unlink()
        raise PartialStyleError(
            f"{url} returned {'nothing' if size == 0 else 'a web page'} instead of the file; "
            "the address may have moved or need a login"
        )
    if expected_size is not None and size != expected_size:
        path.unlink()
        raise PartialStyleError(
            f"download of {url} has {size} bytes, expected {expected_size}; deleted it, try again"
        )
    if sha256 is not None and _sha256(path) != sha256.lower():
        path.unlink()
        raise PartialStyleError(f"download of {url} is corrupt (SHA-256 mismatch); deleted it")


def _is_complete(path: Path, expected_size: int | None, sha256: str | None) -> bool:
    if expected_size is not None and path.stat().st_size != expected_size:
        return False
    return sha256 is None or _sha256(path) == sha256.lower()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()
