"""Reading and writing images for the command line (RGB / RGBA numpy arrays).

Nothing is lost on a fault: an incomplete JPEG or PNG is refused (OpenCV would decode it with the
missing part gray), and outputs are written beside the destination and renamed over it only after
a complete write, so a full disk or a signal never leaves a broken or missing file.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from partialstyle.errors import PartialStyleError
from partialstyle.frame_limits import frame_size_problem
from partialstyle.picture_header import PictureHeader, jpeg_size, read_header, upright

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


# Pictures that are not frames (style pictures) may be larger than a frame, up to this many
# pixels decoded (150 MB as RGB); a JPEG beyond it is decoded reduced by libjpeg, others refused.
MAX_PICTURE_PIXELS = 50_000_000
# OpenCV decodes a JPEG at 1/2, 1/4 or 1/8 of its size while decoding, never at full size.
_REDUCED_JPEG = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def read_picture_file(path: Path, what: str = "input image") -> bytes:
    """The bytes of a picture file, or one line saying why they are not a whole picture."""
    if path.is_dir():
        raise PartialStyleError(f"{what} {path} is a folder, not a picture file; name a file")
    if not path.is_file():
        raise PartialStyleError(f"{what} {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PartialStyleError(f"cannot read {path} ({error.strerror})") from None
    if not data:
        raise PartialStyleError(f"{what} {path} is empty (0 bytes); copy or export it again")
    reason = incomplete_reason(data)
    if reason:
        raise PartialStyleError(f"{path} is {reason}; copy or export it again")
    return data


def _reduction(header: PictureHeader, data: bytes, max_pixels: int) -> int:
    """1, or the JPEG reduction (2, 4, 8) that brings the picture within `max_pixels`."""
    pixels = header.width * header.height
    if pixels <= max_pixels or jpeg_size(data) is None:
        return 1
    return next((factor for factor in (2, 4, 8) if pixels / factor**2 <= max_pixels), 1)


def read_image(
    path: Path,
    what: str = "input image",
    max_pixels: int = MAX_PICTURE_PIXELS,
    reduce: bool = False,
) -> np.ndarray:
    """A picture file as uint8 RGB (or RGBA when it has alpha), upright as viewers show it.

    The size the file declares is checked before decoding, so a small file declaring an
    enormous picture costs no memory: over `max_pixels` it is refused, or with `reduce` a
    JPEG is decoded at 1/2, 1/4 or 1/8 size (style pictures, which are used small anyway).
    Gray becomes RGB; 16-bit becomes 8-bit.
    """
    data, header, factor = _declared(path, what, max_pixels, reduce)
    return _decode(path, data, factor, header.orientation if header else 1)


def check_picture(
    path: Path, what: str, max_pixels: int = MAX_PICTURE_PIXELS, reduce: bool = False
) -> None:
    """Fail in one line unless `read_image` with these arguments would decode `path` (as far
    as its header tells), without decoding it: for checks before any model is loaded."""
    _declared(path, what, max_pixels, reduce)


def _declared(
    path: Path, what: str, max_pixels: int, reduce: bool
) -> tuple[bytes, PictureHeader | None, int]:
    """The file's bytes, its header and the JPEG reduction that keeps it within `max_pixels`."""
    data = read_picture_file(path, what)
    header = read_header(data)
    factor = _reduction(header, data, max_pixels) if header and reduce else 1
    if header and header.width * header.height > max_pixels * factor**2:
        raise PartialStyleError(
            f"{what} {path} declares {header.width}×{header.height} pixels, more than "
            f"{max_pixels / 1e6:.0f} megapixels; scale it down"
        )
    return data, header, factor


def _decode(path: Path, data: bytes, factor: int, orientation: int) -> np.ndarray:
    """Decode (IMREAD_UNCHANGED leaves the EXIF orientation alone; the reduced decode is
    told to), then turn upright ourselves, the same for every format."""
    flags = cv2.IMREAD_UNCHANGED
    if factor > 1:
        flags = _REDUCED_JPEG[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    with quiet_native_stderr():
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise PartialStyleError(f"cannot read {path} as an image (is it a PNG, JPEG or similar?)")
    if image.dtype != np.uint8:
        image = (
            (image / 257).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
        )
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return upright(image, orientation)


def read_frame(path: Path) -> np.ndarray:
    """A picture file that every command accepts as a frame: 32×32 up to 3840×2160 (upright),
    checked on the size the file declares before anything is decoded."""
    data = read_picture_file(path)
    header = read_header(data)
    problem = frame_size_problem(*header.upright_size) if header else None
    if problem is None:
        image = _decode(path, data, 1, header.orientation if header else 1)
        problem = frame_size_problem(image.shape[1], image.shape[0])  # when no header was read
    if problem:
        raise PartialStyleError(f"{path}: {problem}")
    return image


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


def partial_path(path: Path, part: str = "") -> Path:
    """The hidden name beside `path` that an output is written to before it is renamed
    (`part` tells apart several files of one output, as a video's frames and its sound)."""
    tag = f"-{part}" if part else ""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{tag}{path.suffix}")


def _process_runs(pid: int) -> bool:
    """Whether a process with this id runs on this machine (where that cannot be asked
    safely, as on Windows, where os.kill ends processes: assume it does)."""
    if os.name == "nt" or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, as another user's
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Remove the partial files of `path` that processes no longer running left behind (one
    killed by SIGKILL or a power cut could not clean up); returns them. A partial file of a
    process that still runs is that process's work in progress and stays."""
    prefix = f".{path.stem}.partial-"
    removed = []
    for partial in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(path.suffix)}"):
        pid = partial.name[len(prefix) : len(partial.name) - len(path.suffix)].partition("-")[0]
        if pid.isdigit() and not _process_runs(int(pid)):
            with contextlib.suppress(OSError):  # gone already, or not ours to remove
                partial.unlink()
                removed.append(partial)
    return removed


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` beside `path`, flush it to disk, then rename it over `path`.

    On any failure the partial file is removed and an existing `path` stays as it was.
    """
    remove_stale_partials(path)
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


def check_not_the_input(source: Path, dest: Path) -> None:
    """Fail when the output would overwrite the input: the same path, another path to it or
    a hard link to it (the same file on disk), so a result never replaces its own source."""
    try:
        same = dest.exists() and source.exists() and os.path.samefile(source, dest)
    except OSError:
        return  # cannot tell: the later checks name what is wrong with either path
    if same:
        raise PartialStyleError(
            f"output {dest} is the input file {source}; writing it would destroy the input, "
            f"so name another output, e.g. {dest.with_stem(dest.stem + '-styled')}"
        )
