"""The rules of the stream contract that client, server and daemon all apply.

One home for every limit and pattern a stream must satisfy, so that the
client's validation, the server's request schema (its pydantic field limits
are built from these constants) and the daemon's config checks can never
disagree: sample rates, widths and channels, stream ids and tag names,
language codes, output formats, and the server's default port and
``HOST[:PORT]`` syntax.
"""

from __future__ import annotations

import re
from typing import Final, Literal, TypeAlias, TypeGuard, get_args

__all__ = [
    "AUDIO_EXTENSIONS",
    "BUNDLED_MODELS",
    "CONTAINERS",
    "DEFAULT_PORT",
    "FILETYPES",
    "LANGUAGE_AUTO",
    "LANGUAGE_PATTERN",
    "MAX_CHANNELS",
    "MAX_CONTAINER_SAMPRATE",
    "MAX_SAMPRATE",
    "MAX_SAMPWIDTH",
    "MAX_TAGS",
    "MIN_SAMPRATE",
    "OUTPUT_FORMATS",
    "STREAM_ID_PATTERN",
    "TAG_KEY_PATTERN",
    "ContainerName",
    "FileType",
    "as_filetype",
    "is_language",
    "is_stream_id",
    "is_tag_key",
    "parse_hostport",
]

MIN_SAMPRATE: Final = 8000
"""Lowest sample rate (Hz) a source may have."""
MAX_SAMPRATE: Final = 48000
"""Highest sample rate (Hz) a source may have."""
MAX_CONTAINER_SAMPRATE: Final = 192000
"""Highest rate of a container's audio (a 96 kHz FLAC recorder file decodes; WAV/RAW keep 48k)."""
MAX_SAMPWIDTH: Final = 4
"""Widest sample in bytes (32-bit PCM); mu-law and A-law are always 1."""
MAX_CHANNELS: Final = 64
"""Most channels a source may have."""

STREAM_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""A stream id: 1-128 of letters, digits, ``.``, ``_``, ``:``, ``-``, not starting with a mark."""
TAG_KEY_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$"
"""A metadata name: starts with a letter or ``_``; at most 128 characters."""
MAX_TAGS: Final = 256
"""Most tags one stream may carry."""
LANGUAGE_PATTERN: Final = r"^[a-z]{2,3}$"

LANGUAGE_AUTO: Final = "auto"
"""The ``language`` tag that asks for the language to be detected (as no tag does, but
explicitly: refused by a server that cannot detect)."""
"""A ``language`` tag: an ISO 639-1 or 639-3 code in lower case (``en``, ``de``, ``haw``)."""

ContainerName: TypeAlias = Literal[
    "3GP", "AAC", "AIFF", "AMR", "AU", "CAF", "FLAC", "M4A", "MKV", "MOV", "MP3", "MP4", "OGG",
    "WEBM", "WMA", "WMV",
]  # fmt: skip
"""The names ``getfiletype()`` gives files that are neither WAV nor RAW."""
FileType: TypeAlias = Literal["WAV", "RAW", ContainerName]
"""Every file type a stream may have: WAV, headerless RAW, or a container."""
CONTAINERS: Final[tuple[ContainerName, ...]] = get_args(ContainerName)
FILETYPES: Final[tuple[FileType, ...]] = get_args(FileType)

AUDIO_EXTENSIONS: Final = (
    "wav", "wave", "raw", "pcm", "flac", "ogg", "oga", "opus", "mp3", "m4a", "m4b", "aac",
    "mp4", "m4v", "mov", "3gp", "mkv", "mka", "webm", "wma", "wmv", "asf", "aif", "aiff",
    "aifc", "caf", "au", "snd", "amr",
)  # fmt: skip
"""The file name extensions a watch takes unless told otherwise: every format decoded."""

OUTPUT_FORMATS: Final = ("txt", "json", "srt", "vtt")
"""The transcript formats the writers produce."""

BUNDLED_MODELS: Final = ("tiny.en", "base")
"""The Whisper models svserver ships, by the names ``--model`` takes (tiny.en is the
default; base, multilingual, comes with the ``[multilingual]`` extra)."""

DEFAULT_PORT: Final = 8750
"""Where svserver listens unless told otherwise."""

_STREAM_ID = re.compile(STREAM_ID_PATTERN)
_TAG_KEY = re.compile(TAG_KEY_PATTERN)
_LANGUAGE = re.compile(LANGUAGE_PATTERN)


def as_filetype(name: str) -> FileType:
    """``name`` as a :data:`FileType` (``ValueError`` naming the known ones otherwise)."""
    for known in FILETYPES:
        if name == known:
            return known
    raise ValueError(f"file type {name!r} is not one of {', '.join(FILETYPES)}")


def is_stream_id(value: object) -> TypeGuard[str]:
    """True when ``value`` is a valid stream id."""
    return isinstance(value, str) and _STREAM_ID.match(value) is not None


def is_tag_key(value: object) -> TypeGuard[str]:
    """True when ``value`` is a valid metadata name."""
    return isinstance(value, str) and _TAG_KEY.match(value) is not None


def is_language(value: object) -> TypeGuard[str]:
    """True when ``value`` is a language code as the ``language`` tag takes it (or
    :data:`LANGUAGE_AUTO`)."""
    return isinstance(value, str) and (value == LANGUAGE_AUTO or _LANGUAGE.match(value) is not None)


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int | None]:
    """Split ``HOST[:PORT]`` (``[v6]:PORT`` for IPv6; a bare v6 address has no port).

    Raises ``ValueError`` naming the text when there is no host or the port is
    not 1-65535.
    """
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r} has no valid port (1-65535)")
    return host, int(port_text)
