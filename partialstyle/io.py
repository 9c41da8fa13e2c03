"""Reading and writing images for the command line (RGB / RGBA numpy arrays).

Nothing is lost on a fault: an incomplete JPEG or PNG is refused (OpenCV would decode it with the
missing part gray), and outputs are written beside the destination and renamed over it only after
a complete write, so a full disk or a signal never leaves a broken or missing file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from partialstyle.errors import PartialStyleError

WRITABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_START = b"\xff\xd8"
_stderr_lock = threading.RLock()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what C libraries (libpng, libjpeg, FFmpeg) print to file descriptor 2.

    Their warnings would break the promise of one error line; our own errors are raised as
    exceptions and reported after the block ends. File descriptors are per process, so keep
    the block short: another thread's stderr output during it is lost too.
    """
    with _stderr_lock:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to silence
            yield
            return
        try:
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def png_is_complete(data: bytes) -> bool:
    """True when the PNG's chunks run whole up to the IEND chunk."""
    position = len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        position += 12 + length
        if kind == b"IEND":
            return position <= len(data)
    return False


def jpeg_is_complete(data: bytes) -> bool:
    """True when the JPEG's segments and scans run whole up to the end-of-image marker.

    Walks the marker segments (skipping their lengths, so an EXIF thumbnail's markers do not
    count) and each scan's entropy-coded data, which ends at the first marker that is not a
    stuffed byte or a restart marker. Data after the end marker (motion photos) is fine.
    """
    position, size = len(_JPEG_START), len(data)
    while position + 2 <= size:
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0xD9:  # end of image
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            position += 2
            continue
        if position + 4 > size:
            return False
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker != 0xDA:
            continue
        while True:  # start of scan: skip the entropy-coded data
            position = data.find(b"\xff", position)
            if position < 0 or position + 1 >= size:
                return False
            following = data[position + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                position += 2
            elif following == 0xFF:
                position += 1
            else:
                break
    return False


def incomplete_reason(data: bytes) -> str | None:
    """Why the bytes of a JPEG or PNG file are not a whole image, or None (also for others)."""
    if data.startswith(_JPEG_START) and not jpeg_is_complete(data):
        return "a truncated JPEG (it ends before its end-of-image marker)"
    if data.startswith(_PNG_SIGNATURE) and not png_is_complete(data):
        return "a truncated PNG (it ends before its IEND chunk)"
    return None


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (or RGBA when it has alpha); gray becomes RGB."""
    if not path.is_file():
        raise PartialStyleError(f"input image {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PartialStyleError(f"cannot read {path} ({error.strerror})") from None
    reason = incomplete_reason(data)
    if reason:
        raise PartialStyleError(f"{path} is {reason}; copy or export it again")
    with quiet_native_stderr():
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise PartialStyleError(f"cannot read {path} as an image (is it a PNG, JPEG or similar?)")
    if image.dtype != np.uint8:
        image = (
            (image / 257).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frame(path: Path) -> np.ndarray:
    """An image file that every command accepts: the size limits of `check_frame` apply."""
    from partialstyle.frames import check_frame

    image = read_image(path)
    try:
        return check_frame(image)
    except ValueError as error:
        raise PartialStyleError(f"{path}: {error}") from None


def check_writable_folder(folder: Path) -> None:
    """Fail unless a file can be created in `folder` (tried, so read-only mounts count too)."""
    if not folder.exists():
        raise PartialStyleError(f"output folder {folder} does not exist")
    if not folder.is_dir():
        raise PartialStyleError(f"{folder} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise PartialStyleError(
            f"cannot write into {folder} ({error.strerror}); choose another output folder"
        ) from None


def check_output_path(path: Path, suffixes: tuple[str, ...] = WRITABLE_SUFFIXES) -> None:
    """Fail before any work when the output cannot be written."""
    if path.is_dir():
        raise PartialStyleError(
            f"output {path} is a folder; name a file, e.g. {path / ('out' + suffixes[0])}"
        )
    if path.suffix.lower() not in suffixes:
        raise PartialStyleError(f"cannot write {path.name}: use one of {', '.join(suffixes)}")
    check_writable_folder(path.parent)


def partial_path(path: Path) -> Path:
    """The hidden name beside `path` that an output is written to before it is renamed."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` beside `path`, flush it to disk, then rename it over `path`.

    On any failure the partial file is removed and an existing `path` stays as it was.
    """
    partial = partial_path(path)
    try:
        with open(partial, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        kept = "the old file is unchanged" if path.is_file() else "nothing was written"
        raise PartialStyleError(f"could not write {path} ({error.strerror}); {kept}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_image(path: Path, image: np.ndarray) -> None:
    """Write RGB, RGBA or gray uint8 to path (format from the suffix), all or nothing."""
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    with quiet_native_stderr():
        encoded, data = cv2.imencode(path.suffix.lower(), image)
    if not encoded:
        raise PartialStyleError(f"could not encode {path.name} as {path.suffix}")
    write_atomically(path, data.tobytes())
