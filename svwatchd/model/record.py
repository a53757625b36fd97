"""A stream's record: what svserver answers about one stream on refresh and getstreams.

The one definition of that JSON, shared by three readers: svserver builds it
(its SQL is derived from these classes, see ``svwatchd.server._records``), its
API documents it (the response models of ``/openapi.json``), and the client
parses it into a :class:`~svwatchd.client.Stream`. Values are typed as the
JSON carries them: a status is its name (a ``DecodeStatus`` is a ``StrEnum``,
so the name equals the member), times are ISO 8601 text in UTC
(``2026-11-24T07:51:41.123Z``).

A deleted stream is a :class:`TombstoneRecord`: its id and ``DELETED``, nothing
else, so the id stays reserved while everything about the stream is gone.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from svwatchd.model.contract import FileType
from svwatchd.model.enums import DecodeStatus, Encoding, Endian
from svwatchd.model.metadata import TagValue

__all__ = [
    "AnyRecord",
    "IsoTime",
    "ListenerInfo",
    "RecordFormat",
    "RecordStats",
    "SourceKind",
    "StreamRecord",
    "TombstoneRecord",
]

IsoTime: TypeAlias = str
"""A wall-clock time as ISO 8601 text in UTC, ``Z``-suffixed (``2026-11-24T07:51:41.123Z``)."""

SourceKind: TypeAlias = Literal["file", "upload", "socket"]
"""Where a stream's audio comes from: a path on the server, uploaded bytes, or a TCP socket."""

_S = DecodeStatus


class RecordFormat(TypedDict):
    """The source's sample layout (a WAV file's as its header says)."""

    encoding: Encoding
    sampwidth: int
    samprate: int
    channels: int
    endian: Endian


class RecordStats(TypedDict):
    """Decoding figures so far."""

    audio_seconds_received: float | None  # the source's duration (a socket: spooled so far)
    audio_seconds_decoded: float
    decode_seconds: float  # wall time spent decoding
    real_time_factor: float | None  # decode_seconds / audio_seconds_decoded; None before any
    queue_wait: float | None  # seconds from QUEUED to ACTIVE
    utterances: int  # committed, not skipped by resume(fromtime)
    words: int
    track: int | None  # a container's audio track decoded (0-based), once decoded
    track_language: str | None  # that track's language tag, if it has one
    channels_decoded: int | None  # split_channels: channels decoded apart
    channels_repeated: int | None  # split_channels: channels that repeated another (not decoded)
    language: str | None  # the language heard (ISO 639-1): detected, or the one decoded in
    language_probability: float | None  # the detection's probability (None: not detected)
    language_mismatch: str | None  # an English-only model's check heard this language instead
    language_mismatch_probability: float | None  # ... with this probability
    task: str  # transcribe, or translate (into English)


class ListenerInfo(TypedDict):
    """Someone following the stream's utterances (``listenerinfo()``)."""

    address: str  # host:port of the listening client
    since: IsoTime
    sent: int  # utterances sent to it so far


class StreamRecord(TypedDict):
    """A stream that is not deleted."""

    id: str
    status: Literal[_S.QUEUED, _S.ACTIVE, _S.PAUSED, _S.DONE, _S.ERROR, _S.CLOSED]
    error: str | None  # why it ended in ERROR
    kind: SourceKind
    source: str  # the path as the client named it, or host:port
    filetype: FileType | None  # None for a socket
    format: RecordFormat
    tags: dict[str, TagValue]
    attempts: int  # 1, plus one for each retry after ERROR
    created: IsoTime
    start: IsoTime | None  # when it became ACTIVE
    end: IsoTime | None  # when it finished
    sourceseconds: float | None  # seconds of source audio (a socket: received so far)
    stats: RecordStats
    listeners: list[ListenerInfo]


class TombstoneRecord(TypedDict):
    """A deleted stream: only its id remains (it cannot be reused)."""

    id: str
    status: Literal[_S.DELETED]


AnyRecord: TypeAlias = StreamRecord | TombstoneRecord
"""What refresh answers for a known id: a record, or a tombstone (tell them by ``status``)."""
