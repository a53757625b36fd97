"""What a Stream's source is, and its audio format: validated once, when the Stream is made.

A file's kind is decided by its content: a WAV file when its name says so
(then it must be valid RIFF/WAVE, never read as raw) or when its content
starts with RIFF/RIFX; a container (FLAC, OGG, MP3, M4A, MP4, MKV, WebM, ...)
when :func:`svwatchd._media.probe_media` recognises it, whatever its name; else
headerless raw audio, but only when its format fields are given. A WAV file's
or a container's format comes from the file, and metadata that contradicts it
is an error naming both values. Headerless sources (raw files, sockets) need
``samprate`` and ``encoding``, and ``sampwidth`` for linear PCM.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from svwatchd._audio import is_riff, probe_wav
from svwatchd._media import MediaInfo, Track, probe_media
from svwatchd.errors import AudioDecodeError, InvalidStreamError
from svwatchd.model.enums import Encoding, Endian
from svwatchd.model.format import AudioFormat
from svwatchd.model.metadata import TagValue, split_metadata

__all__ = [
    "Fields",
    "Source",
    "SourceInfo",
    "resolve_source",
]

Source = str | os.PathLike[str] | tuple[str, int]
_WAV_EXTS = (".wav", ".wave")
Fields = Mapping[str, int | Encoding | Endian]


@dataclass(frozen=True)
class SourceInfo:
    """A validated source: where it is, what kind, its format and its tags."""

    address: tuple[str, int] | None
    path: str | None
    size: int | None
    filetype: str | None
    frames: int | None
    format: AudioFormat
    tags: dict[str, TagValue]
    media: MediaInfo | None = None  # a container: what the probe found
    track: Track | None = None  # a container: the audio track to decode


def _socket_address(source: object) -> tuple[str, int] | None:
    if isinstance(source, tuple | list) and len(source) == 2:
        host, port = source
        if not isinstance(host, str) or not host.strip():
            raise InvalidStreamError(
                f"Socket source {source!r}: host must be a non-empty string", source=str(source)
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidStreamError(
                f"Socket source {source!r}: port must be an integer in 1..65535",
                source=str(source),
            )
        return host.strip(), port
    return None


def resolve_source(source: object, metadata: Mapping[str, Any]) -> SourceInfo:
    """Validate ``source`` and ``metadata``; every error names the source and the field."""
    address = _socket_address(source)
    if address is not None:
        name = f"{address[1]}@{address[0]}"
        fmt, tags = split_metadata(name, metadata)
        return SourceInfo(address, None, None, None, None, _headerless(name, "socket", fmt), tags)
    if not isinstance(source, str | os.PathLike) or not os.fspath(source):
        raise InvalidStreamError(
            f"Stream source {source!r} is neither a file path nor a (host, port) pair",
            source=str(source),
        )
    path = os.path.abspath(os.fspath(source))
    if "\0" in path:
        raise InvalidStreamError(f"Stream source {path!r} contains a NUL byte", source=path)
    fmt, tags = split_metadata(path, metadata)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidStreamError(
            f"Cannot read {path}: {exc.strerror or exc}", source=path
        ) from None
    if not os.path.isfile(path):
        raise InvalidStreamError(f"Cannot read {path}: not a regular file", source=path)
    if path.lower().endswith(_WAV_EXTS) or is_riff(path):
        try:
            info = probe_wav(path)
        except AudioDecodeError as exc:
            raise InvalidStreamError(str(exc), source=path) from None
        _check_against_header(path, fmt, info.format, "the WAV header's")
        return SourceInfo(None, path, st.st_size, "WAV", info.frames, info.format, tags)
    try:
        media = probe_media(path)
    except AudioDecodeError as exc:
        raise InvalidStreamError(str(exc), source=path) from None
    if media is not None:
        return _container(path, st.st_size, media, fmt, tags)
    if not fmt and st.st_size == 0:
        raise InvalidStreamError(
            f"Stream {path}: the file is empty (0 bytes); there is no audio to decode",
            source=path,
        )
    if not fmt:
        raise InvalidStreamError(
            f"Stream {path}: {_what_is(path, st.st_size)}: not WAV nor a known container "
            "(FLAC, OGG, MP3, M4A, MP4, MOV, MKV, WebM, WMA, ...); to read it as headerless "
            "raw audio give its format: samprate and encoding (and sampwidth for SPCM/UPCM)",
            source=path,
            field="samprate",
        )
    return SourceInfo(None, path, st.st_size, "RAW", None, _headerless(path, "raw file", fmt), tags)


def _container(
    path: str, size: int, media: MediaInfo, fmt: Fields, tags: dict[str, TagValue]
) -> SourceInfo:
    """A container's Stream: its chosen track's rate and channels, checked against ``fmt``."""
    language = tags.get("language")
    choice = tags.get("track")
    try:
        track = media.choose(
            choice if isinstance(choice, int | str) else None,
            language if isinstance(language, str) else None,
        )
    except ValueError as exc:
        raise InvalidStreamError(f"Stream {path}: {exc}", source=path, field="track") from None
    try:
        audio = media.decoded_format(track)
    except ValueError as exc:
        raise InvalidStreamError(
            f"Stream {path}: the {media.filetype} file's audio track {track.number} is not "
            f"decodable: {exc}",
            source=path,
        ) from None
    coded = [k for k in ("encoding", "sampwidth", "endian") if k in fmt]
    if coded:
        raise InvalidStreamError(
            f"Stream {path}: metadata {coded[0]}={fmt[coded[0]]} does not apply to a "
            f"{media.filetype} file (its {track.codec} codec says how samples are coded); "
            "drop the field",
            source=path,
            field=coded[0],
        )
    _check_against_header(path, fmt, audio, f"the {media.filetype} file's")
    frames = round(media.duration * track.samprate)
    return SourceInfo(None, path, size, media.filetype, frames, audio, tags, media, track)


def _what_is(path: str, size: int) -> str:
    """A few words on what a file that is not audio looks like, for error messages."""
    with open(path, "rb") as f:
        head = f.read(64)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"found unknown data starting {head[:8].hex(' ')}"
    printable = sum(c.isprintable() or c.isspace() for c in text)
    if printable == len(text):
        return f"found text ({text.strip()[:24]!r}...)"
    return f"found unknown data starting {head[:8].hex(' ')}"


def _check_against_header(name: str, fmt: Fields, actual_fmt: AudioFormat, whose: str) -> None:
    for key, given in fmt.items():
        actual = getattr(actual_fmt, key)
        if given != actual:
            raise InvalidStreamError(
                f"Stream {name}: metadata {key}={given} contradicts {whose} "
                f"{key}={actual}; drop the field or fix the file",
                source=name,
                field=key,
            )


def _headerless(name: str, kind: str, fmt: Fields) -> AudioFormat:
    for required in ("samprate", "encoding"):
        if required not in fmt:
            raise InvalidStreamError(
                f"Stream {name}: a {kind} has no header, so '{required}' must be given "
                "(samprate and encoding, and sampwidth for SPCM/UPCM)",
                source=name,
                field=required,
            )
    encoding = Encoding.parse(fmt["encoding"])
    width = fmt.get("sampwidth")
    if encoding in (Encoding.ULAW, Encoding.ALAW):
        if width not in (None, 1):
            raise InvalidStreamError(
                f"Stream {name}: sampwidth must be 1 for {encoding.value}, not {width}",
                source=name,
                field="sampwidth",
            )
        width = 1
    elif width is None:
        raise InvalidStreamError(
            f"Stream {name}: headerless {encoding.value} needs 'sampwidth' (bytes per sample, 1-4)",
            source=name,
            field="sampwidth",
        )
    return AudioFormat(
        filetype="RAW",
        encoding=encoding,
        sampwidth=int(width),
        samprate=int(fmt["samprate"]),
        channels=int(fmt.get("channels", 1)),
        endian=Endian.parse(fmt.get("endian", Endian.LITTLE)),
    )
