"""Hostile and unlucky input to the `partialstyle` command (issue 18): one line on stderr,
exit code 2, nothing lost, no memory blown; and what silently went wrong before is said."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from partialstyle.commands.cli import main
from partialstyle.io import read_image


@pytest.fixture()
def photo(tmp_path: Path, astronaut: np.ndarray) -> Path:
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut[::2, ::2], cv2.COLOR_RGB2BGR))
    return path


def _clip(path: Path, astronaut: np.ndarray, frames: int, size=(160, 96), fps=25.0) -> Path:
    """A clip of the astronaut panning, written with OpenCV."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for shift in range(frames):
        frame = cv2.resize(np.roll(astronaut, 8 * shift, axis=1), size)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _partials(folder: Path) -> list[Path]:
    return list(folder.glob(".*partial*"))


# -- item 4: the output is the input -------------------------------------------------------------


def test_output_that_is_the_input_is_refused_and_the_input_kept(photo, tmp_path, astronaut, capsys):
    clip = _clip(tmp_path / "clip.mp4", astronaut, frames=3)
    linked = tmp_path / "linked.png"
    os.link(photo, linked)
    (tmp_path / "sub").mkdir()
    cases = [
        ["image", str(photo), str(photo)],
        ["image", str(photo), str(tmp_path / "sub" / ".." / photo.name)],  # another path
        ["image", str(photo), str(linked)],  # a hard link
        ["video", str(clip), str(clip)],
        ["mask", str(photo), str(linked)],
        ["segment", str(photo), "--json", str(photo)],
        ["styles", "--sheet", str(photo), "--photo", str(photo)],
    ]
    before = {path: path.read_bytes() for path in (photo, clip)}
    for args in cases:
        style = ["--style", "multistyle:3"] if args[0] in ("image", "video") else []
        assert main([*args, *style]) == 2, args
        line = _error_line(capsys)
        assert "is the input file" in line and "name another output" in line, line
    assert {path: path.read_bytes() for path in before} == before
    assert not _partials(tmp_path)


# -- item 1: an empty picture ---------------------------------------------------------------------


def test_empty_picture_is_one_line_everywhere(photo, tmp_path, capsys):
    empty, empty_clip = tmp_path / "empty.png", tmp_path / "empty.mp4"
    empty.touch()
    empty_clip.touch()
    out = tmp_path / "out.png"
    assert main(["video", str(empty_clip), str(tmp_path / "o.mp4"), "--style", "multistyle:3"]) == 2
    assert f"{empty_clip} is empty (0 bytes)" in _error_line(capsys)
    cases = [
        ["image", str(empty), str(out), "--style", "multistyle:3"],
        ["mask", str(empty), str(out)],
        ["segment", str(empty), "--json", str(tmp_path / "found.json")],
        ["styles", "--sheet", str(out), "--photo", str(empty)],
        ["styles", "--sheet", str(out), "--picture", str(empty)],
        ["image", str(photo), str(out), "--style", f"arbitrary:{empty}"],
        ["image", str(photo), str(out), "--person-style", "multistyle:3", "--region",
         f"person:1=arbitrary:{empty}"],
    ]  # fmt: skip
    for args in cases:
        assert main(args) == 2, args
        line = _error_line(capsys)
        assert f"{empty} is empty (0 bytes)" in line, line
    assert not out.exists() and not (tmp_path / "found.json").exists()


# -- item 2: EXIF orientation ----------------------------------------------------------------------


def _phone_photo(path: Path, upright: np.ndarray, orientation: int = 6) -> Path:
    """A JPEG stored turned (as phones store portrait shots) with the EXIF tag that turns it
    back: orientation 6 means "turn clockwise to view", so the stored pixels are turned back."""
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # counter-clockwise: 6 undoes it
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


@pytest.mark.usefixtures("default_models")
def test_rotated_phone_photo_comes_out_as_viewers_show_it(tmp_path, astronaut, capsys):
    upright = np.ascontiguousarray(astronaut[:300, :512])  # 512 wide, 300 high as viewed
    phone = _phone_photo(tmp_path / "phone.jpg", upright)
    with Image.open(phone) as stored:
        assert stored.size == (300, 512)  # as it lies in the file
        viewed = np.asarray(ImageOps.exif_transpose(stored))
    reference = tmp_path / "viewed.png"
    Image.fromarray(viewed).save(reference)
    assert np.abs(read_image(phone).astype(int) - viewed).mean() < 1.0

    results = {}
    for name, source in (("phone", phone), ("reference", reference)):
        out = tmp_path / f"{name}-out.png"
        assert main(["image", str(source), str(out), "--style", "multistyle:3"]) == 0
        results[name] = cv2.imread(str(out)).astype(int)
    assert results["phone"].shape == (300, 512, 3)
    assert np.abs(results["phone"] - results["reference"]).mean() < 2.0

    # a style picture too: the turned and the upright picture give the same style
    for name, picture in (("phone", phone), ("reference", reference)):
        out = tmp_path / f"{name}-styled.png"
        args = ["image", str(reference), str(out), "--style", f"arbitrary:{picture}"]
        assert main(args) == 0, capsys.readouterr().err
        results[name] = cv2.imread(str(out)).astype(int)
    assert np.abs(results["phone"] - results["reference"]).mean() < 2.0
    turned = tmp_path / "turned.png"  # the picture as stored, read without its tag
    Image.fromarray(np.rot90(viewed, 1).copy()).save(turned)
    out = tmp_path / "turned-styled.png"
    assert main(["image", str(reference), str(out), "--style", f"arbitrary:{turned}"]) == 0
    turned_difference = np.abs(cv2.imread(str(out)).astype(int) - results["reference"]).mean()
    assert turned_difference > 4 * np.abs(results["phone"] - results["reference"]).mean()


# -- item 3: decompression bombs -------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body).to_bytes(4, "big")
    return len(body).to_bytes(4, "big") + kind + body + crc


@pytest.fixture(scope="session")
def bomb_png(tmp_path_factory) -> Path:
    """A 0.9 MB gray PNG that declares 30000×30000 pixels (900 MB decoded), all black."""
    side = 30000
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])  # 8-bit gray
    packer, row = zlib.compressobj(9), bytes(side + 1)  # filter byte + pixels
    data = b"".join([*(packer.compress(row) for _ in range(side)), packer.flush()])
    signature = b"\x89PNG\r\n\x1a\n"
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    path.write_bytes(signature + chunks)
    return path


def _jpeg_declaring(path: Path, small: np.ndarray, width: int, height: int) -> Path:
    """A small real JPEG whose frame header is rewritten to declare width×height: libjpeg
    decodes it at that size (the scan it lacks comes out gray), a bomb of a few kilobytes."""
    Image.fromarray(small).save(path, "JPEG")
    data = bytearray(path.read_bytes())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


_COMMAND = (
    "import sys\n"
    "from partialstyle.commands.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('torch' in sys.modules)\n"
    "sys.exit(code)\n"
)
# Linux counts a process's memory at fork towards the child's peak, and pytest's process is
# large: a small Python in between starts the command and reports only the command's peak.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    "sys.exit(code)\n"
)


def _run_measured(*args: str) -> tuple[int, str, int, bool]:
    """Run the command in a child process: exit code, stderr, peak memory in bytes, and
    whether it imported torch."""
    child = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, "-c", _COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    torch_imported, peak = child.stdout.split()[-2:]
    return child.returncode, child.stderr.strip(), int(peak), torch_imported == "True"


GB = 1024**3


def test_bomb_png_is_refused_before_it_is_decoded(bomb_png, photo, tmp_path):
    assert bomb_png.stat().st_size < 1_000_000
    out = tmp_path / "out.png"
    for args in (
        ["image", str(bomb_png), str(out), "--style", "multistyle:3"],
        ["image", str(photo), str(out), "--style", f"arbitrary:{bomb_png}"],
        ["styles", "--sheet", str(out), "--picture", str(bomb_png)],
    ):
        code, err, peak, torch_imported = _run_measured(*args)
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f"{bomb_png}" in err and "30000×30000" in err, err
        assert peak < 0.5 * GB and not torch_imported, (args, peak / GB)
    assert not out.exists() and not _partials(tmp_path)


@pytest.mark.usefixtures("default_models")
def test_jpeg_bomb_as_style_picture_is_decoded_reduced(tmp_path, photo, astronaut):
    """20000×20000 declared (1.2 GB as RGB): decoded at 1/4 size, within the memory bound."""
    bomb = _jpeg_declaring(tmp_path / "bomb.jpg", astronaut[:64, :64], 20000, 20000)
    assert bomb.stat().st_size < 10_000
    small = tmp_path / "small.png"
    Image.fromarray(astronaut[:64, :64]).save(small)
    peaks = {}
    for name, picture in (("small", small), ("bomb", bomb)):
        out = tmp_path / f"{name}.png"
        code, err, peaks[name], _ = _run_measured(
            "image", str(photo), str(out), "--style", f"arbitrary:{picture}"
        )
        assert code == 0 and out.is_file(), err
    assert peaks["bomb"] - peaks["small"] < 1.5 * GB, peaks
    assert read_image(bomb, reduce=True).shape == (5000, 5000, 3)


# -- item 6: messages that name the real problem -------------------------------------------------


def test_folder_given_as_input_is_called_a_folder(photo, tmp_path, capsys):
    folder = tmp_path / "holiday"
    folder.mkdir()
    out = tmp_path / "out.png"
    for args in (
        ["image", str(folder), str(out), "--style", "multistyle:3"],
        ["video", str(folder), str(tmp_path / "out.mp4"), "--style", "multistyle:3"],
        ["mask", str(folder), str(out)],
        ["image", str(photo), str(out), "--style", f"arbitrary:{folder}"],
    ):
        assert main(args) == 2, args
        line = _error_line(capsys)
        assert f"{folder} is a folder" in line and "does not exist" not in line, line


def test_models_prepare_into_a_read_only_folder_says_so(tmp_path, tmpfs, monkeypatch, capsys):
    models = tmpfs(64, read_only=True)
    monkeypatch.setenv("PARTIALSTYLE_MODELS", str(models))
    assert main(["models", "prepare", "selfie"]) == 2
    line = _error_line(capsys)
    assert f"cannot write into the models folder {models} (Read-only file system)" in line
    assert "PARTIALSTYLE_MODELS" in line and "Errno" not in line and "tmp" not in line[-60:]


def test_bench_json_prints_only_json(monkeypatch, capsys):
    """The benchmarks themselves are slow; what is checked here is where their tables go."""
    from partialstyle.commands import bench

    def tables_then_results(**options) -> dict:
        print("device cpu, 2 threads; each time the median of 2 rounds")  # as a real run
        return {"device": "cpu", "options": options}

    monkeypatch.setattr(bench, "run_benchmarks", tables_then_results)
    assert main(["bench", "--json", "--quick"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["device"] == "cpu"
    assert "median of 2 rounds" in captured.err


# -- item 5: requests that were silently ignored -------------------------------------------------


def test_class_region_without_yolact_is_an_error(photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    styles = ["--background-style", "multistyle:3", "--region", "class:cat=multistyle:7"]
    for extra, words in (
        ([], "needs YOLACT weights, and there are none; run `partialstyle models fetch yolact"),
        (["--segmenter", "selfie"], "needs the YOLACT segmenter, not selfie"),
        (["--weights", str(tmp_path / "missing.pth")], "missing.pth do not exist"),
    ):
        assert main(["image", str(photo), str(out), *styles, *extra]) == 2, extra
        line = _error_line(capsys)
        assert "--region class:cat" in line and words in line, line
    assert not out.exists()


def test_class_region_runs_yolact_under_auto(tmp_path):
    """Under "auto" YOLACT runs by itself only on a GPU; a class region asks for it anyway."""
    from partialstyle.commands.options import plan_from_args
    from partialstyle.commands.restyle import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    checkpoint = tmp_path / "yolact.pth"
    checkpoint.write_bytes(b"checked when it is loaded")
    args = parser.parse_args(
        ["image", "in.png", "out.png", "--region", "class:cat=multistyle:7"]
        + ["--weights", str(checkpoint)]
    )
    plan, config = plan_from_args(args)
    assert config.segmenter == "yolact" and "cat" in dict(plan.classes)


@pytest.mark.usefixtures("default_models")
def test_unused_weights_are_a_warning(photo, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    for weights in (tmp_path / "missing.pth", corrupt):
        out = tmp_path / f"{weights.stem}.png"
        args = ["image", str(photo), str(out), "--style", "multistyle:3", "--weights", str(weights)]
        assert main(args) == 0
        line = _error_line(capsys)
        assert line == (
            f"partialstyle: warning: --weights {weights} is not used: one style everywhere "
            "needs no segmentation"
        )
        assert out.is_file()


# -- item 9: errors found before torch is imported -----------------------------------------------


def test_errors_after_parsing_come_before_torch(photo, tmp_path, astronaut):
    clip = _clip(tmp_path / "clip.mp4", astronaut, frames=2)
    missing, out = tmp_path / "missing.png", tmp_path / "out.png"
    for args in (
        ["image", str(missing), str(out), "--style", "multistyle:3"],
        ["image", str(photo), str(out), "--style", "multistyle:99"],
        ["image", str(photo), str(out), "--style", "nonsense:1"],
        ["image", str(photo), str(out), "--style", f"arbitrary:{missing}"],
        ["image", str(photo), str(out), "--region", "class:unicorn=multistyle:3"],
        ["image", str(photo), str(out), "--style", "multistyle:3", "--segmenter", "sam"],
        ["video", str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4"), "--style", "candy"],
        ["video", str(clip), str(tmp_path / "o.mp4"), "--style", "multistyle:3=nan"],
        ["mask", str(missing), str(out)],
        ["segment", str(missing), "--json", str(tmp_path / "o.json")],
        ["styles", "--sheet", str(out), "--photo", str(missing)],
    ):
        code, err, peak, torch_imported = _run_measured(*args)
        assert code == 2 and len(err.splitlines()) == 1, (args, err)
        assert not torch_imported, args
        assert peak < 0.3 * GB, (args, peak / GB)


# -- item 7: partial files of killed runs ----------------------------------------------------------


@pytest.mark.usefixtures("default_models")
def test_partial_files_of_killed_runs_are_removed_by_the_next_run(photo, tmp_path, astronaut):
    clip = _clip(tmp_path / "clip.mp4", astronaut, frames=400, size=(320, 192))
    out = tmp_path / "out.mp4"
    command = [sys.executable, "-m", "partialstyle", "video", str(clip), str(out)]
    killed = subprocess.Popen([*command, "--style", "multistyle:3", "--quiet"])
    deadline = time.monotonic() + 120
    while not _partials(tmp_path):
        assert killed.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # no handler runs: the partial file stays
    killed.wait(timeout=30)
    (leftover,) = _partials(tmp_path)
    assert leftover.name == f".out.partial-{killed.pid}.mp4"

    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        in_progress = tmp_path / f".out.partial-{running.pid}.mp4"  # a live process's work
        in_progress.write_bytes(b"being written")
        short = _clip(tmp_path / "short.mp4", astronaut, frames=2)
        assert main(["video", str(short), str(out), "--style", "multistyle:3", "--quiet"]) == 0
        assert not leftover.exists() and in_progress.exists() and out.is_file()
    finally:
        running.kill()
        running.wait()

    # pictures too: a dead process's partial beside the output goes with the next write
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".result.partial-{dead.stdout.strip()}.png"
    stale.write_bytes(b"half a picture")
    assert main(["image", str(photo), str(tmp_path / "result.png"), "--style", "multistyle:3"]) == 0
    assert not stale.exists() and (tmp_path / "result.png").is_file()


# -- item 8: a video that will not fit fails early -------------------------------------------------


@pytest.mark.usefixtures("default_models")
def test_video_that_will_not_fit_fails_early(tmp_path, astronaut, tmpfs, monkeypatch, capsys):
    from partialstyle.pipeline import Pipeline

    clip = _clip(tmp_path / "clip.mp4", astronaut, frames=300, size=(320, 192))
    disk = tmpfs(1024)
    out = _clip(disk / "out.mp4", astronaut, frames=2)
    old = out.read_bytes()
    processed = []
    real_process = Pipeline.process

    def counted(self, frame):
        processed.append(1)
        return real_process(self, frame)

    monkeypatch.setattr(Pipeline, "process", counted)
    args = ["video", str(clip), str(out), "--style", "multistyle:3", "--quiet"]
    assert main([*args, "--process-height", "96"]) == 2
    line = _error_line(capsys)
    assert f"the disk holding {out} has" in line and "the old file is unchanged" in line, line
    assert len(processed) <= 60, len(processed)  # of 300: at its first write to the disk
    assert out.read_bytes() == old and not _partials(disk)


# -- item 10: the sound is kept -------------------------------------------------------------------


def _clip_with_sound(path: Path, astronaut: np.ndarray, codec: str, sound_from: float = 0.0):
    """A 1 s clip (24 frames of 160×96) with a 440 Hz tone from `sound_from` seconds on."""
    rate, fps, size = 48000, 24, (160, 96)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = *size, "yuv420p"
        audio = out.add_stream(codec, rate=rate, layout="mono")
        for index in range(fps):
            rgb = cv2.resize(np.roll(astronaut, 8 * index, axis=1), size)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            out.mux(video.encode(frame))
        seconds = np.arange(round(rate * (1.0 - sound_from))) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * seconds) * 32767).astype(np.int16)
        for start in range(0, len(tone), 960):
            samples = av.AudioFrame.from_ndarray(tone[None, start : start + 960], "s16", "mono")
            samples.sample_rate, samples.pts = rate, start + round(sound_from * rate)
            out.mux(audio.encode(samples))
        for stream in (video, audio):
            out.mux(stream.encode(None))
    return path


def _sound(path: Path) -> tuple[str, float, np.ndarray, list[bytes]]:
    """The clip's audio codec, its start relative to the video's (s), samples and packets."""
    with av.open(str(path)) as clip:
        (stream,) = clip.streams.audio
        video = clip.streams.video[0]
        start = float(stream.start_time * stream.time_base)
        start -= float((video.start_time or 0) * video.time_base)
        packets = [bytes(packet) for packet in clip.demux(stream) if packet.size]
    with av.open(str(path)) as clip:
        samples = np.concatenate(
            [frame.to_ndarray().reshape(-1) for frame in clip.decode(audio=0)]
        ).astype(np.float32)
    return stream.codec_context.name, start, samples, packets


@pytest.mark.usefixtures("default_models")
def test_video_keeps_the_sound_and_its_timing(tmp_path, astronaut, capsys):
    clip = _clip_with_sound(tmp_path / "clip.mp4", astronaut, "aac", sound_from=0.25)
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), str(out), "--style", "multistyle:3", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    codec, start, samples, packets = _sound(out)
    original = _sound(clip)
    assert codec == "aac" and packets == original[3]  # copied, not re-encoded
    assert abs(start - original[1]) < 0.002 and abs(start - 0.25) < 0.03
    assert np.array_equal(samples, original[2])
    assert _frame_count(out) == 24 and not _partials(tmp_path)


@pytest.mark.usefixtures("default_models")
def test_sound_the_container_cannot_hold_is_re_encoded(tmp_path, astronaut, capsys):
    """Opus cannot go into AVI as it is: it becomes PCM there, sample for sample."""
    clip = _clip_with_sound(tmp_path / "clip.mkv", astronaut, "libopus")
    out = tmp_path / "out.avi"
    assert main(["video", str(clip), str(out), "--style", "multistyle:3", "--quiet"]) == 0
    codec, _, samples, _ = _sound(out)
    original = _sound(clip)[2] * 32767  # decoded Opus is float
    assert codec == "pcm_s16le" and abs(len(samples) - len(original)) <= 960
    common = min(len(samples), len(original))
    assert np.abs(samples[:common] - original[:common]).max() <= 2.0
    assert _frame_count(out) == 24 and not _partials(tmp_path)


@pytest.mark.usefixtures("default_models")
def test_video_without_sound_or_without_pyav(tmp_path, astronaut, monkeypatch, capsys):
    silent = _clip(tmp_path / "silent.mp4", astronaut, frames=4)
    out = tmp_path / "out.mp4"
    assert main(["video", str(silent), str(out), "--style", "multistyle:3", "--quiet"]) == 0
    with av.open(str(out)) as result:
        assert not result.streams.audio and result.streams.video[0].frames == 4
    assert capsys.readouterr().err == ""

    clip = _clip_with_sound(tmp_path / "clip.mp4", astronaut, "aac")
    monkeypatch.setitem(sys.modules, "av", None)  # as on a machine without PyAV
    assert main(["video", str(clip), str(out), "--style", "multistyle:3", "--quiet"]) == 0
    assert _error_line(capsys) == (
        "partialstyle: note: PyAV is not installed, so the sound of clip.mp4 (if any) is not "
        "carried over"
    )
    assert _frame_count(out) == 24


def _frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


@pytest.mark.usefixtures("default_models")
def test_full_disk_while_adding_the_sound_keeps_the_old_output(tmp_path, astronaut, tmpfs, capsys):
    """Room for the frames but not for the second file that takes the sound beside them."""
    clip = _clip_with_sound(tmp_path / "clip.mp4", astronaut, "aac")
    args = [str(clip), "--style", "multistyle:3", "--quiet"]
    assert main(["video", args[0], str(tmp_path / "sized.mp4"), *args[1:]]) == 0
    size = (tmp_path / "sized.mp4").stat().st_size
    disk = tmpfs(4 * size // 1024)
    out = disk / "out.mp4"
    out.write_bytes(b"an older result")
    _fill(disk, leave_bytes=round(1.4 * size))
    assert main(["video", args[0], str(out), *args[1:]]) == 2
    line = _error_line(capsys)
    assert line == (
        f"partialstyle: error: could not write {out} (No space left on device); "
        "the old file is unchanged"
    )
    assert out.read_bytes() == b"an older result" and not _partials(disk)


def _fill(folder: Path, leave_bytes: int) -> None:
    """Fill the disk holding `folder` until about `leave_bytes` are free."""
    free = shutil.disk_usage(folder).free
    (folder / "filler").write_bytes(bytes(max(0, free - leave_bytes)))
