"""Any file's audio for an engine: whole, or a block at a time from any position.

WAV, headerless RAW and containers (:mod:`svwatchd._media`) all come out the
same way: float32 at the engine's rate, mixed to mono or each channel alone
(``split_channels``). :func:`iter_audio` streams a file from a position in
blocks, resampling incrementally, so a file of any length costs the memory
of a block (a long file is decoded piece by piece, and resumed from the last
piece committed); :func:`read_audio` and :func:`read_channels` read a whole
short file. The file is the authority: a container is probed again here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Final, NamedTuple

import numpy as np
import soxr

from svwatchd._audio import (
    DEFAULT_RATE,
    Samples,
    StrPath,
    check_rate,
    decode_frames,
    probe_wav,
    read_wav,
    resample,
    to_mono,
    wav_blocks,
)
from svwatchd._media import BLOCK_SECONDS, Frames, MediaInfo, Track, iter_blocks, probe_media
from svwatchd.errors import AudioDecodeError
from svwatchd.model.format import AudioFormat

__all__ = [
    "ChosenTrack",
    "choose_track",
    "duration_seconds",
    "iter_audio",
    "read_audio",
    "read_channels",
]

_QUALITY: Final = "HQ"
_EMPTY: Final[Samples] = np.zeros(0, dtype=np.float32)


def read_audio(
    path: StrPath,
    fmt: AudioFormat,
    *,
    target_rate: int = DEFAULT_RATE,
    track: int | str | None = None,
    language: str | None = None,
    chosen: ChosenTrack | None = None,
) -> Samples:
    """Decode a whole file to mono float32 at ``target_rate`` (channels averaged, soxr 'HQ').

    For ``fmt.filetype == 'WAV'`` the header is authoritative and the rest of ``fmt``
    is not consulted; a container is probed again and its ``track`` (number or
    language tag; else the one in ``language``, else the default) decoded. For
    'RAW' the bytes are read as ``fmt`` says; a trailing partial frame is
    dropped. Raises :class:`AudioDecodeError` for undecodable or empty audio.
    """
    if fmt.is_container:
        blocks = iter_audio(
            path, fmt, target_rate=target_rate, track=track, language=language, chosen=chosen
        )
        return _joined(os.fspath(path), blocks)[0]
    frames, rate = _whole_frames(path, fmt)
    return resample(to_mono(frames), rate, check_rate(target_rate))


def read_channels(
    path: StrPath,
    fmt: AudioFormat,
    *,
    target_rate: int = DEFAULT_RATE,
    track: int | str | None = None,
    language: str | None = None,
    chosen: ChosenTrack | None = None,
) -> list[Samples]:
    """Decode a file as :func:`read_audio` does, but each channel alone (``split_channels``:
    a stereo call with one party per channel), in channel order."""
    if fmt.is_container:
        blocks = iter_audio(
            path,
            fmt,
            target_rate=target_rate,
            track=track,
            language=language,
            split=True,
            chosen=chosen,
        )
        return _joined(os.fspath(path), blocks)
    frames, rate = _whole_frames(path, fmt)
    target_rate = check_rate(target_rate)
    return [
        resample(np.ascontiguousarray(frames[:, c]), rate, target_rate)
        for c in range(frames.shape[1])
    ]


def duration_seconds(path: StrPath, fmt: AudioFormat) -> float:
    """Length of a file's audio in seconds: from the WAV header, the container's probe or
    the raw file's size."""
    if fmt.is_container:
        return _probe(os.fspath(path), fmt).duration
    if fmt.filetype == "WAV":
        return probe_wav(path).duration
    return os.path.getsize(path) // fmt.frame_bytes / fmt.samprate


class ChosenTrack(NamedTuple):
    """A container probed once and the track chosen in it: pass it on to the readers so
    they do not probe the file again (a probe decodes the file's end)."""

    media: MediaInfo
    track: Track


def choose_track(
    path: StrPath, fmt: AudioFormat, track: int | str | None, language: str | None
) -> ChosenTrack | None:
    """The container track a stream decodes (None for WAV and RAW); ``AudioDecodeError``
    when the file is no longer that container or has no such track."""
    if not fmt.is_container:
        return None
    source = os.fspath(path)
    media = _probe(source, fmt)
    return ChosenTrack(media, _choose(source, media, track, language))


def iter_audio(
    path: StrPath,
    fmt: AudioFormat,
    *,
    target_rate: int = DEFAULT_RATE,
    track: int | str | None = None,
    language: str | None = None,
    start: float = 0.0,
    split: bool = False,
    block_seconds: float = BLOCK_SECONDS,
    chosen: ChosenTrack | None = None,
) -> Iterator[list[Samples]]:
    """The file's audio from ``start`` seconds on, a block at a time: each block a list of one
    mono array, or of one array per channel with ``split``, at ``target_rate``. A container's
    track is ``chosen`` already (:func:`choose_track`), or chosen here by ``track``/``language``."""
    source = os.fspath(path)
    target_rate = check_rate(target_rate)
    rate, channels, frames = _frames(source, fmt, track, language, start, block_seconds, chosen)
    outputs = channels if split else 1
    streams: list[Any] = [
        soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality=_QUALITY)
        if rate != target_rate
        else None
        for _ in range(outputs)
    ]
    for block in frames:
        signals = (
            [np.ascontiguousarray(block[:, c]) for c in range(outputs)]
            if split
            else [to_mono(block)]
        )
        yield [
            signal if stream is None else np.asarray(stream.resample_chunk(signal), np.float32)
            for signal, stream in zip(signals, streams, strict=True)
        ]
    if any(stream is not None for stream in streams):
        yield [
            np.asarray(stream.resample_chunk(_EMPTY, last=True), np.float32) for stream in streams
        ]


def _frames(
    source: str,
    fmt: AudioFormat,
    track: int | str | None,
    language: str | None,
    start: float,
    block_seconds: float,
    chosen: ChosenTrack | None,
) -> tuple[int, int, Iterator[Frames]]:
    """(rate, channels, frame blocks from ``start``) of any file."""
    if fmt.is_container:
        picked = chosen or choose_track(source, fmt, track, language)
        assert picked is not None  # fmt is a container
        media, tr = picked
        blocks = iter_blocks(source, media, tr, start=start, block_seconds=block_seconds)
        return tr.samprate, tr.channels, blocks
    if fmt.filetype == "WAV":
        wav = probe_wav(source).format
        first = round(start * wav.samprate)
        size = max(1, int(wav.samprate * block_seconds))
        return wav.samprate, wav.channels, wav_blocks(source, start_frame=first, blocksize=size)
    return fmt.samprate, fmt.channels, _raw_blocks(source, fmt, start, block_seconds)


def _raw_blocks(
    source: str, fmt: AudioFormat, start: float, block_seconds: float
) -> Iterator[Frames]:
    block = max(1, int(fmt.samprate * block_seconds)) * fmt.frame_bytes
    with open(source, "rb") as f:
        f.seek(round(start * fmt.samprate) * fmt.frame_bytes)
        while data := f.read(block):
            frames = decode_frames(data, fmt)
            if len(frames):
                yield frames


def _joined(source: str, blocks: Iterator[list[Samples]]) -> list[Samples]:
    parts: list[list[Samples]] = []
    for block in blocks:
        if not parts:
            parts = [[] for _ in block]
        for out, signal in zip(parts, block, strict=True):
            out.append(signal)
    joined = [np.concatenate(p).astype(np.float32, copy=False) for p in parts]
    if not joined or len(joined[0]) == 0:
        raise AudioDecodeError(source, "the file's audio decodes to nothing")
    return joined


def _whole_frames(path: StrPath, fmt: AudioFormat) -> tuple[Frames, int]:
    """A WAV or raw file's frames, shape (n, channels), and their rate."""
    if fmt.filetype == "WAV":
        info, frames = read_wav(path)
        return frames, info.format.samprate
    with open(path, "rb") as f:
        frames = decode_frames(f.read(), fmt)
    if len(frames) == 0:
        raise AudioDecodeError(os.fspath(path), "the raw file holds no complete audio frame")
    return frames, fmt.samprate


def _choose(source: str, media: MediaInfo, track: int | str | None, language: str | None) -> Track:
    try:
        return media.choose(track, language)
    except ValueError as exc:
        raise AudioDecodeError(source, str(exc)) from None


def _probe(source: str, fmt: AudioFormat) -> MediaInfo:
    media = probe_media(source)
    if media is None:
        raise AudioDecodeError(source, f"it is no longer a {fmt.filetype} file")
    return media
