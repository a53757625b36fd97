"""What a Stream's source is, and its audio format: validated once, when the Stream is made.

A file is a WAV file when its name says so (then it must be valid RIFF/WAVE,
never read as raw) or when its content starts with RIFF/RIFX; any other file
is headerless raw audio. A WAV file's format comes from its header, and
metadata that contradicts the header is an error naming both values.
Headerless sources (raw files, sockets) need ``samprate`` and ``encoding``,
and ``sampwidth`` for linear PCM.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from svwatchd.audio import WavInfo, is_riff, probe_wav
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
    filetype: Literal["WAV", "RAW"] | None
    frames: int | None
    format: AudioFormat
    tags: dict[str, TagValue]


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
        _check_against_header(path, fmt, info)
        return SourceInfo(None, path, st.st_size, "WAV", info.frames, info.format, tags)
    return SourceInfo(None, path, st.st_size, "RAW", None, _headerless(path, "raw file", fmt), tags)


def _check_against_header(name: str, fmt: Fields, info: WavInfo) -> None:
    for key, given in fmt.items():
        actual = getattr(info.format, key)
        if given != actual:
            raise InvalidStreamError(
                f"Stream {name}: metadata {key}={given} contradicts the WAV header's "
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
