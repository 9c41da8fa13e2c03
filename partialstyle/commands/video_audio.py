"""The source clip's sound, carried into the restyled video (PyAV).

OpenCV writes frames only, so the restyled frames are written first and the source's audio
streams are then copied beside them into the final file, packet by packet (no re-encoding,
so the sound is bit-identical), shifted by the source's own video start so that picture and
sound keep the offset they had. A codec the output container cannot hold (PCM in .mp4) is
re-encoded to one it can (AAC; PCM in .avi).

Why PyAV rather than the ffmpeg program: it is a pip dependency with its own FFmpeg
libraries inside the wheel, so every installation has it (the OBS filter's too, on every
platform) and no program has to be found on PATH; and it reports failures as exceptions that
become one line, where a subprocess would leave us parsing ffmpeg's log.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from partialstyle.errors import PartialStyleError, one_line

# What an audio stream is re-encoded to when the container cannot hold it as it is.
_FALLBACK_CODEC = {".avi": "pcm_s16le"}
_DEFAULT_FALLBACK = "aac"


def audio_streams(source: Path) -> int:
    """How many audio streams `source` has (0 when PyAV cannot open it)."""
    import av

    try:
        with av.open(str(source)) as container:
            return len(container.streams.audio)
    except av.FFmpegError:
        return 0


def add_audio(frames: Path, source: Path, dest: Path) -> None:
    """Write `dest`: the video stream of `frames` and every audio stream of `source`.

    `dest` is a partial file; the caller checks it and renames it. Raises PartialStyleError
    naming `source` when the sound cannot be carried over, OSError when writing fails.
    """
    import av

    for copy in (True, False):  # copied as it is, else re-encoded for the container
        try:
            _mux(frames, source, dest, copy)
            return
        except OSError:  # a failed write (a full disk), which re-encoding does not help
            raise
        except (av.FFmpegError, ValueError) as error:
            problem = one_line(error, sentence=True)
    raise PartialStyleError(
        f"could not carry the sound of {source} into {dest.suffix} ({problem}); "
        "try .mkv, which holds any sound"
    )


def _mux(frames: Path, source: Path, dest: Path, copy: bool) -> None:
    import av

    with (
        av.open(str(frames)) as picture,
        av.open(str(source)) as original,
        av.open(str(dest), "w") as output,
    ):
        video_in = picture.streams.video[0]
        video_out = output.add_stream_from_template(video_in)
        start = _video_start(original)
        tracks = {
            stream.index: _AudioTrack(stream, output, dest.suffix.lower(), copy)
            for stream in original.streams.audio
        }
        sound = _sound(original, tracks)
        video = _timed(picture.demux(video_in), video_out, Fraction(0))
        for _, packet in heapq.merge(video, _timed(sound, None, start), key=lambda item: item[0]):
            output.mux(packet)
        for track in tracks.values():
            for packet in track.flush():
                output.mux(packet)


def _sound(container: Any, tracks: dict[int, _AudioTrack]) -> Iterator[Any]:
    """The output packets of every audio track, in the source's order (one demuxer for all:
    two demuxing the same file would each drop the other's packets)."""
    audio = [track.source for track in tracks.values()]
    for packet in container.demux(*audio):
        if packet.dts is not None:
            yield from tracks[packet.stream.index].convert(packet)


def _video_start(container: Any) -> Fraction:
    """When the source's video starts (seconds): its frames become the output's from 0."""
    video = container.streams.video
    if not video or video[0].start_time is None:
        return Fraction(0)
    return video[0].start_time * video[0].time_base


def _timed(packets: Iterator[Any], stream: Any, shift: Fraction) -> Iterator[tuple[float, Any]]:
    """Packets with their decoding time in seconds, shifted back by `shift` seconds and
    moved to the output stream `stream` (None: they are there already)."""
    for packet in packets:
        if packet.dts is None:  # the demuxer's empty end-of-stream packet
            continue
        if shift:
            offset = round(shift / packet.time_base)
            packet.pts = None if packet.pts is None else packet.pts - offset
            packet.dts -= offset
        if stream is not None:
            packet.stream = stream
        yield float(packet.dts * packet.time_base), packet


class _AudioTrack:
    """One audio stream of the source and its copy (or re-encoding) in the output."""

    def __init__(self, stream: Any, output: Any, suffix: str, copy: bool) -> None:
        self.source = stream
        self.copy = copy
        if copy:
            self.target = output.add_stream_from_template(stream)
        else:
            codec = _FALLBACK_CODEC.get(suffix, _DEFAULT_FALLBACK)
            self.target = output.add_stream(codec, rate=stream.rate, layout=stream.layout)

    def convert(self, packet: Any) -> Iterator[Any]:
        """The packet as it goes into the output: itself, or what re-encoding it gives."""
        if self.copy:
            packet.stream = self.target
            yield packet
            return
        for frame in packet.decode():
            yield from self.target.encode(frame)

    def flush(self) -> Iterator[Any]:
        """The encoder's last packets (none when copying)."""
        if not self.copy:
            yield from self.target.encode(None)
