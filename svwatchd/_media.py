"""Compressed audio and containers: what a file holds, and its audio as float32 mono.

A file's kind is decided by its content, never by its name: RIFF/WAVE is WAV
(:mod:`svwatchd._audio` reads it), a known container is that container, and
anything else is headerless RAW only when its format fields are given. This
module recognises containers by their magic bytes first -- cheap, and not
fooled by names (FFmpeg's own probe guesses by extension: a text file named
``.flac`` "opens" as FLAC at 0 Hz) nor by raw PCM that happens to start like
an MP3 frame (two consecutive frame headers are required) -- then reads them:

* FLAC, OGG (Vorbis, Opus), MP3, AIFF, CAF and AU through libsndfile (``soundfile``);
* MP4/M4A/MOV/3GP, Matroska/WebM, ASF (WMA/WMV), AAC (ADTS) and AMR through
  PyAV, whose wheel carries FFmpeg (no system ffmpeg needed).

A probe opens the file, checks that it has an audio track that decodes and
that its end is there (a truncated file is refused at the boundary, not
half-transcribed), and reports container, codec, rate, channels, duration and
tracks. Decoding goes a block at a time: channels averaged to mono, resampled
incrementally (soxr), so memory follows the block, not the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import soundfile as sf

from svwatchd._sniff import HEAD_BYTES, Reader, mp3_truncation, sniff, webm_doctype
from svwatchd.errors import AudioDecodeError
from svwatchd.model.contract import FileType, as_filetype
from svwatchd.model.enums import Encoding
from svwatchd.model.format import AudioFormat
from svwatchd.model.languages import same_language

__all__ = [
    "BLOCK_SECONDS",
    "Frames",
    "MediaInfo",
    "Samples",
    "Track",
    "iter_blocks",
    "probe_media",
]

Samples = np.ndarray[Any, np.dtype[np.float32]]
Frames = np.ndarray[Any, np.dtype[np.float32]]
"""Decoded frames, shape (n, channels), float32."""

BLOCK_SECONDS: Final = 10.0
"""Seconds of source audio decoded per block: memory per open file stays near this."""

_TAIL_SECONDS: Final = 0.5
"""How much of the end a probe decodes to prove the file is complete."""


@dataclass(frozen=True)
class Track:
    """One audio track of a container: ``number`` counts audio tracks only, from 0."""

    number: int
    codec: str
    samprate: int
    channels: int
    language: str | None = None
    default: bool = False
    stream_index: int = 0  # the container's own index of this stream (PyAV)


@dataclass(frozen=True)
class MediaInfo:
    """What a probe learned: container name, which library reads it, its audio tracks."""

    filetype: FileType  # 'FLAC', 'OGG', 'MP3', 'M4A', 'MP4', 'MOV', 'MKV', 'WEBM', ...
    reader: Reader
    tracks: tuple[Track, ...]
    duration: float  # seconds, of the longest audio track
    has_video: bool = False

    def choose(self, track: int | str | None = None, language: str | None = None) -> Track:
        """The track to decode: ``track`` by number or language tag; else the track in the
        stream's ``language``; else the container's default; else the first.

        Raises ``ValueError`` naming the choices when ``track`` matches none.
        """
        if isinstance(track, bool):
            raise ValueError(f"track must be a track number or a language tag, not {track!r}")
        if isinstance(track, int):
            if 0 <= track < len(self.tracks):
                return self.tracks[track]
            raise ValueError(f"track {track} does not exist; {self.describe_tracks()}")
        if isinstance(track, str):
            found = [t for t in self.tracks if same_language(t.language, track)]
            if not found:
                raise ValueError(f"no audio track in language {track!r}; {self.describe_tracks()}")
            return found[0]
        if language is not None:
            for t in self.tracks:
                if same_language(t.language, language):
                    return t
        return next((t for t in self.tracks if t.default), self.tracks[0])

    def decoded_format(self, track: Track) -> AudioFormat:
        """The format a track decodes to: 16-bit signed PCM at its own rate and channels
        (raises ``ValueError`` when those are outside what the contract allows)."""
        return AudioFormat(
            filetype=self.filetype,
            encoding=Encoding.SPCM,  # what the codec decodes to
            sampwidth=2,
            samprate=track.samprate,
            channels=track.channels,
        )

    def describe_tracks(self) -> str:
        """The tracks in one phrase, for error messages."""
        parts = [f"{t.number} ({t.language or 'no language'}, {t.codec})" for t in self.tracks]
        return f"the {self.filetype} file has audio track(s) {', '.join(parts)}"


def probe_media(path: str) -> MediaInfo | None:
    """Probe a file: None when it is not a known container, else its :class:`MediaInfo`.

    Raises :class:`AudioDecodeError` (naming the file and what was found) for a
    known container that cannot be read, is truncated or has no audio track;
    ``OSError`` passes through.
    """
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        size = os.fstat(f.fileno()).st_size
    found = sniff(head, size)
    if found is None:
        return None
    family, reader = found
    if family == "MP3" and (truncated := mp3_truncation(path, head, size)) is not None:
        raise AudioDecodeError(path, truncated)
    if reader == "sndfile":
        info = _probe_sndfile(path, family)
        if info is not None:
            return info
    return _probe_av(path, family)  # libsndfile could not (e.g. Speex in OGG): FFmpeg can


def _open_sndfile(path: str) -> sf.SoundFile:
    """libsndfile on a descriptor: by name, soundfile would read a ``.raw`` file as RAW."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return sf.SoundFile(fd, closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _probe_sndfile(path: str, family: str) -> MediaInfo | None:
    try:
        with _open_sndfile(path) as snd:
            frames, rate, channels = int(snd.frames), int(snd.samplerate), int(snd.channels)
            codec = str(snd.subtype)
            if frames <= 0 or rate <= 0 or channels <= 0:
                raise AudioDecodeError(path, f"the {family} file holds no audio")
            tail = min(frames, int(rate * _TAIL_SECONDS))
            if snd.seekable():
                snd.seek(frames - tail)
            got = len(snd.read(tail, dtype="float32", always_2d=True)) if snd.seekable() else tail
    except sf.SoundFileError as exc:
        if "not recognised" in str(exc).lower() or "unknown format" in str(exc).lower():
            return None
        raise AudioDecodeError(
            path, f"unreadable or truncated {family} file ({_why(exc)})"
        ) from None
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioDecodeError(
            path, f"unreadable or truncated {family} file ({_why(exc)})"
        ) from None
    if got < tail:
        raise AudioDecodeError(
            path, f"the {family} file is truncated: its last {tail - got} frames are missing"
        )
    track = Track(0, codec.lower(), rate, channels, default=True)
    return MediaInfo(as_filetype(family), "sndfile", (track,), frames / rate)


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "error_string", None) or exc).strip().rstrip(".")


def _container_name(path: str, family: str, container: Any, has_video: bool) -> str:
    """The name ``getfiletype()`` gives an FFmpeg-read container."""
    if family == "MP4":
        brand = str(container.metadata.get("major_brand", "")).strip().lower()
        if brand == "qt":
            return "MOV"
        if brand.startswith("3g"):
            return "3GP"
        return "MP4" if has_video else "M4A"
    if family == "MKV":
        return "WEBM" if webm_doctype(path) else "MKV"
    if family == "ASF":
        return "WMV" if has_video else "WMA"
    return family


def _probe_av(path: str, family: str) -> MediaInfo:
    import av

    try:
        with av.open(path) as container:
            audio = list(container.streams.audio)
            has_video = bool(container.streams.video)
            name = _container_name(path, family, container, has_video)
            if not audio:
                what = "video only" if has_video else "no streams"
                raise AudioDecodeError(path, f"the {name} file has no audio track ({what})")
            tracks = tuple(_track(i, s) for i, s in enumerate(audio))
            duration = max(_seconds(container, s) for s in audio)
            first = _decode_some(container, audio[0], start=None)
            if first == 0:
                raise AudioDecodeError(path, f"the {name} file's audio track decodes to nothing")
            if duration > 2 * _TAIL_SECONDS:
                at = duration - _TAIL_SECONDS
                if _decode_some(container, audio[0], start=at) == 0:
                    raise AudioDecodeError(
                        path, f"the {name} file is truncated: nothing decodes after {at:.1f} s"
                    )
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(
            path, f"unreadable or truncated {family} file ({_why(exc)})"
        ) from None
    for t in tracks:
        if t.samprate <= 0 or t.channels <= 0:
            raise AudioDecodeError(path, f"the {name} file's audio track {t.number} has no rate")
    return MediaInfo(as_filetype(name), "av", tracks, duration, has_video)


def _track(number: int, stream: Any) -> Track:
    ctx = stream.codec_context
    lang = stream.metadata.get("language")
    return Track(
        number=number,
        codec=str(ctx.name),
        samprate=int(ctx.sample_rate or 0),
        channels=int(ctx.channels or 0),
        language=None if lang in (None, "", "und") else str(lang),
        default=bool(int(stream.disposition) & 1),
        stream_index=int(stream.index),
    )


def _seconds(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return 0.0


def _decode_some(container: Any, stream: Any, *, start: float | None) -> int:
    """Samples decoded from ``stream`` (a little, from ``start`` seconds if given)."""
    if start is not None:
        container.seek(int(start / stream.time_base), stream=stream, any_frame=False)
    decoded = 0
    for packet in container.demux(stream):
        for frame in packet.decode():
            decoded += frame.samples
        if decoded:
            return decoded
    return decoded


def iter_blocks(
    path: str,
    info: MediaInfo,
    track: Track,
    *,
    start: float = 0.0,
    block_seconds: float = BLOCK_SECONDS,
) -> Iterator[Frames]:
    """Decode ``track`` from ``start`` seconds on, a block at a time: frames of shape
    (n, channels) at the track's own rate."""
    first = max(0, round(start * track.samprate))
    if info.reader == "sndfile":
        block = max(1, int(track.samprate * block_seconds))
        with _open_sndfile(path) as snd:
            if first:
                snd.seek(min(first, snd.frames))
            for frames in snd.blocks(blocksize=block, dtype="float32", always_2d=True):
                yield np.asarray(frames, dtype=np.float32)
        return
    yield from _av_blocks(path, track, first, block_seconds)


def _av_blocks(path: str, track: Track, first: int, block_seconds: float) -> Iterator[Frames]:
    """FFmpeg's decode of one track from frame ``first`` on: it seeks to the packet before
    (seeks land on packets) and drops what precedes ``first``."""
    import av

    want = max(1, int(track.samprate * block_seconds))
    pending: list[Frames] = []
    held = 0
    try:
        with av.open(path) as container:
            stream = next(s for s in container.streams.audio if s.index == track.stream_index)
            base = stream.time_base
            if first and base is not None:
                container.seek(int(first / track.samprate / base), stream=stream)
            resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout)
            for packet in container.demux(stream):
                for frame in stream.decode(packet):
                    at = (
                        round(frame.pts * base * track.samprate)
                        if frame.pts is not None and base is not None
                        else None
                    )
                    for out in resampler.resample(frame):
                        data = np.asarray(out.to_ndarray(), dtype=np.float32)
                        data = data.reshape(-1, out.layout.nb_channels)
                        if first and at is not None and at < first:
                            data = data[first - at :]
                        pending.append(data)
                        held += len(data)
                if held >= want:
                    yield np.concatenate(pending)
                    pending, held = [], 0
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(path, f"decoding failed ({_why(exc)})") from None
    if pending:
        yield np.concatenate(pending)
