"""Compressed audio and containers: what a file holds, and its audio as float32 mono.

A file's kind is decided by its content, never by its name: RIFF/WAVE is WAV
(:mod:`svwatchd.audio` reads it), a known container is that container, and
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
from typing import Any, Final, Literal

import numpy as np
import soundfile as sf

from svwatchd.errors import AudioDecodeError
from svwatchd.model.contract import FileType, as_filetype
from svwatchd.model.languages import same_language

__all__ = [
    "BLOCK_SECONDS",
    "Frames",
    "MediaInfo",
    "Reader",
    "Samples",
    "Track",
    "is_container",
    "iter_blocks",
    "probe_media",
    "sniff",
]

Samples = np.ndarray[Any, np.dtype[np.float32]]
Frames = np.ndarray[Any, np.dtype[np.float32]]
"""Decoded frames, shape (n, channels), float32."""
Reader = Literal["sndfile", "av"]

BLOCK_SECONDS: Final = 10.0
"""Seconds of source audio decoded per block: memory per open file stays near this."""

_TAIL_SECONDS: Final = 0.5
"""How much of the end a probe decodes to prove the file is complete."""

# First bytes -> (family, reader). Families that share a magic are told apart later.
_MAGIC: Final[tuple[tuple[int, bytes, str, Reader], ...]] = (
    (0, b"fLaC", "FLAC", "sndfile"),
    (0, b"OggS", "OGG", "sndfile"),
    (0, b"ID3", "MP3", "sndfile"),
    (4, b"ftyp", "MP4", "av"),
    (0, b"\x1a\x45\xdf\xa3", "MKV", "av"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF", "av"),
    (0, b"caff", "CAF", "sndfile"),
    (0, b".snd", "AU", "sndfile"),
    (0, b"#!AMR", "AMR", "av"),
)
_HEAD: Final = 4096

# MPEG audio: bitrate (kbit/s) by [version is MPEG-1][layer index], and sample rates.
_BITRATES: Final = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES: Final = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


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

    def describe_tracks(self) -> str:
        """The tracks in one phrase, for error messages."""
        parts = [f"{t.number} ({t.language or 'no language'}, {t.codec})" for t in self.tracks]
        return f"the {self.filetype} file has audio track(s) {', '.join(parts)}"


def sniff(head: bytes, size: int) -> tuple[str, Reader] | None:
    """The container family a file's first bytes announce, or None (not a container)."""
    for offset, magic, family, reader in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return family, reader
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF", "sndfile"
    if _mpeg_frames(head, size):
        return "MP3", "sndfile"
    if len(head) >= 7 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0 and _adts_frames(head):
        return "AAC", "av"
    return None


def _mpeg_frame_length(h: bytes) -> int | None:
    """Length in bytes of the MPEG audio frame whose header is ``h[:4]``, or None."""
    if len(h) < 4 or h[0] != 0xFF or h[1] & 0xE0 != 0xE0:
        return None
    version, layer = (h[1] >> 3) & 3, (h[1] >> 1) & 3
    bitrate_i, rate_i, padding = h[2] >> 4, (h[2] >> 2) & 3, (h[2] >> 1) & 1
    if version == 1 or layer == 0 or bitrate_i in (0, 15) or rate_i == 3:
        return None
    layer_n = 4 - layer
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer_n)][bitrate_i] * 1000
    rate = _MPEG_RATES[version][rate_i]
    if layer_n == 1:
        return (12 * bitrate // rate + padding) * 4
    per_frame = 144 if (layer_n == 2 or mpeg1) else 72
    return per_frame * bitrate // rate + padding


def _mpeg_frames(head: bytes, size: int) -> bool:
    """True when ``head`` starts with two consecutive MPEG audio frames (or one that
    fills the file): raw PCM can begin with a frame sync by chance, never with two."""
    first = _mpeg_frame_length(head)
    if first is None:
        return False
    if first == size:
        return True
    return first + 4 <= len(head) and _mpeg_frame_length(head[first:]) is not None


def _adts_frames(head: bytes) -> bool:
    """Two consecutive AAC ADTS frame headers at the start of ``head``."""
    length = ((head[3] & 3) << 11) | (head[4] << 3) | (head[5] >> 5)
    nxt = head[length : length + 2]
    return length > 7 and len(nxt) == 2 and nxt[0] == 0xFF and nxt[1] & 0xF6 == 0xF0


def is_container(path: str) -> bool:
    """True when the file starts like a known container (its own header says its format)."""
    with open(path, "rb") as f:
        head = f.read(_HEAD)
        size = os.fstat(f.fileno()).st_size
    return sniff(head, size) is not None


def probe_media(path: str) -> MediaInfo | None:
    """Probe a file: None when it is not a known container, else its :class:`MediaInfo`.

    Raises :class:`AudioDecodeError` (naming the file and what was found) for a
    known container that cannot be read, is truncated or has no audio track;
    ``OSError`` passes through.
    """
    with open(path, "rb") as f:
        head = f.read(_HEAD)
        size = os.fstat(f.fileno()).st_size
    found = sniff(head, size)
    if found is None:
        return None
    family, reader = found
    if family == "MP3":
        _check_xing(path, head, size)
    if reader == "sndfile":
        info = _probe_sndfile(path, family)
        if info is not None:
            return info
    return _probe_av(path, family)  # libsndfile could not (e.g. Speex in OGG): FFmpeg can


def _check_xing(path: str, head: bytes, size: int) -> None:
    """An MP3 whose Xing/Info header names more bytes than the file has is truncated."""
    start = 0
    if head[:3] == b"ID3" and len(head) >= 10:
        start = 10 + ((head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9])
    with open(path, "rb") as f:
        f.seek(start)
        frame = f.read(256)
    for tag in (b"Xing", b"Info"):
        at = frame.find(tag)
        if at < 0 or len(frame) < at + 16:
            continue
        flags = int.from_bytes(frame[at + 4 : at + 8], "big")
        if flags & 2:  # the byte count is present (after the frame count, if that is)
            pos = at + 8 + (4 if flags & 1 else 0)
            declared = int.from_bytes(frame[pos : pos + 4], "big")
            if declared and size - start < declared * 0.99:
                raise AudioDecodeError(
                    path,
                    f"the MP3 file is truncated: its header announces {declared} bytes of "
                    f"audio, the file holds {size - start}",
                )
        return


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
        return "WEBM" if _webm_doctype(path) else "MKV"
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


def _webm_doctype(path: str) -> bool:
    """Matroska's EBML header names its DocType ("webm" or "matroska") near the start."""
    with open(path, "rb") as f:
        head = f.read(64)
    at = head.find(b"\x42\x82")
    return at >= 0 and head[at + 3 : at + 7] == b"webm"


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
