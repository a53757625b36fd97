"""Streams: audio sources described for decoding, as the vendor's ``stream`` module specifies.

A :class:`Stream` is a file (WAV, a container such as MP3 or M4A, or headerless
raw) or a TCP socket address,
with its audio format and free metadata tags. It is validated completely at
construction, so a bad stream never reaches a server. Once passed to
``Server.decodestreams`` it remembers that server and its server-side id, and
its lifecycle methods (``refresh``, ``pause``, ``resume``, ...) act through it.

Over 400 lines on purpose: ``Stream`` is the vendor's class, some forty
methods whose contract reads best in one place; validation lives apart
(``_source.py``), as do the Server calls the lifecycle methods delegate to.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from svwatchd.client._source import Source, resolve_source
from svwatchd.errors import InvalidStreamError, StreamsError, StreamStateError
from svwatchd.model.contract import is_stream_id
from svwatchd.model.enums import DecodeStatus, Encoding, Endian
from svwatchd.model.format import AudioFormat
from svwatchd.model.metadata import TagValue, match_metadata
from svwatchd.model.select import FileSelector, walk_many

if TYPE_CHECKING:
    from svwatchd.client.server import Server
    from svwatchd.model.record import AnyRecord
    from svwatchd.model.speechdata import Utterance

__all__ = ["DecodeStatus", "Encoding", "Endian", "Stream", "createdirstreams", "createstreams"]


class Stream:
    """An audio source for decoding: a file path or a ``(host, port)`` socket address.

    ``metadata`` holds the reserved format fields (``samprate``, ``sampwidth``,
    ``encoding``, ``channels``, ``endian``) and free tags. Headerless sources
    (raw files, sockets) need ``samprate`` and ``encoding``, and ``sampwidth``
    for linear PCM; a WAV file's format comes from its header, and metadata
    that contradicts it is an error naming both values.

    ``status``, ``start`` and ``end`` are ``None`` until the stream is submitted;
    they change only when refreshed from the server.
    """

    status: DecodeStatus | None
    start: datetime | None
    end: datetime | None

    def __init__(self, source: Source, **metadata: Any) -> None:
        src = resolve_source(source, metadata)
        self._address = src.address
        self._path = src.path
        self._size = src.size
        self._filetype = src.filetype
        self._frames = src.frames
        self._tags: dict[str, TagValue] = src.tags
        self._format = src.format
        self._id = uuid.uuid4().hex
        self._server: Server | None = None
        self.status = None
        self.start = None
        self.end = None
        self.error: str | None = None
        self._stats: dict[str, Any] = {}
        self._sourceseconds: float | None = None
        self._listeners: list[dict[str, Any]] = []

    # -- identity -----------------------------------------------------------------

    @property
    def id(self) -> str:
        """The stream's id on the server, chosen by the client (random unless set).

        Resending a stream with the same id never creates a second stream, which
        makes a retried submission safe.
        """
        return self._id

    @id.setter
    def id(self, value: str) -> None:
        if self._server is not None:
            raise StreamStateError(
                f"Stream {self.sourcename()} is already submitted as {self._id}; its id is fixed",
                stream_id=self._id,
            )
        if not is_stream_id(value):
            raise InvalidStreamError(
                f"Stream id {value!r} is not valid (1-128 of letters, digits, '.', '_', ':', '-')",
                source=self.sourcename(),
                field="id",
            )
        self._id = value

    @property
    def source(self) -> str | tuple[str, int]:
        """The absolute file path, or the ``(host, port)`` socket address."""
        if self._address is not None:
            return self._address
        assert self._path is not None
        return self._path

    @property
    def metadata(self) -> dict[str, object]:
        """Format fields (canonical values) and tags, as one dict."""
        fmt = self._format
        out: dict[str, object] = {
            "samprate": fmt.samprate,
            "sampwidth": fmt.sampwidth,
            "encoding": fmt.encoding,
            "channels": fmt.channels,
            "endian": fmt.endian,
        }
        out.update(self._tags)
        return out

    @property
    def tags(self) -> dict[str, TagValue]:
        """The free metadata tags, as given."""
        return dict(self._tags)

    @property
    def format(self) -> AudioFormat:
        """The audio format, from the WAV header or the metadata."""
        return self._format

    def frames(self) -> int | None:
        """Number of audio frames of a WAV file (from its header), else ``None``."""
        return self._frames

    def __repr__(self) -> str:
        status = getattr(self, "status", None)
        status = status.value if status else "unsubmitted"
        return f"<Stream {self._id} {self.sourcename()} {status}>"

    # -- the spec's source methods -----------------------------------------------

    def sourcename(self) -> str:
        """Base filename, or ``<port>@<host>`` for a socket."""
        if self._address is not None:
            return f"{self._address[1]}@{self._address[0]}"
        assert self._path is not None
        return os.path.basename(self._path)

    def getfiletype(self) -> str | None:
        """``'WAV'``, ``'RAW'`` or the container's name (``'MP3'``, ``'M4A'``, ...) for a
        file; ``None`` for a socket."""
        return self._filetype

    def fromfile(self) -> bool:
        """True if the source is a file."""
        return self._path is not None

    def fromsocket(self) -> bool:
        """True if the source is a TCP socket."""
        return self._address is not None

    def fromwavfile(self) -> bool:
        """True if the source is a WAV file."""
        return self._filetype == "WAV"

    def fromrawfile(self) -> bool:
        """True if the source is a headerless raw file."""
        return self._filetype == "RAW"

    def size(self) -> int | None:
        """Size of the source file in bytes when the Stream was made, or ``None`` for a socket."""
        return self._size

    def encoding(self) -> Encoding:
        """The source's sample encoding."""
        return self._format.encoding

    def endian(self) -> Endian:
        """The source's byte order."""
        return self._format.endian

    def sampwidth(self) -> int:
        """Bytes per sample."""
        return self._format.sampwidth

    def samprate(self) -> int:
        """Sample rate in Hz."""
        return self._format.samprate

    def channels(self) -> int:
        """Number of audio channels."""
        return self._format.channels

    def tagsmatch(self, metadata: Mapping[str, object]) -> bool:
        """True if every field in ``metadata`` exists here with the same value.

        Format fields are compared in canonical form (``'8k'`` equals 8000);
        tags are compared as given.
        """
        return match_metadata(self.metadata, self._tags, metadata)

    # -- status predicates ---------------------------------------------------------

    def isqueued(self) -> bool:
        """True if the stream is queued for decoding."""
        return self.status is DecodeStatus.QUEUED

    def isactive(self) -> bool:
        """True if the stream is being decoded."""
        return self.status is DecodeStatus.ACTIVE

    def ispaused(self) -> bool:
        """True if decoding is paused."""
        return self.status is DecodeStatus.PAUSED

    def isdone(self) -> bool:
        """True if decoding has finished for any reason: DONE, ERROR, CLOSED or DELETED."""
        return self.status is not None and self.status.finished

    def iserror(self) -> bool:
        """True if decoding was aborted by an error (see ``error`` for the reason)."""
        return self.status is DecodeStatus.ERROR

    def isclosed(self) -> bool:
        """True if decoding was aborted on request."""
        return self.status is DecodeStatus.CLOSED

    def isdeleted(self) -> bool:
        """True if the stream was deleted from the server."""
        return self.status is DecodeStatus.DELETED

    # -- server side ---------------------------------------------------------------

    def _require_server(self) -> Server:
        if self._server is None:
            raise StreamStateError(
                f"Stream {self.sourcename()} has not been submitted to a server; pass it to "
                "Server.decodestreams first",
                stream_id=self._id,
            )
        return self._server

    def _bind(self, server: Server) -> None:
        """Remember the server this stream was submitted to (called by the Server)."""
        self._server = server

    @classmethod
    def _from_record(cls, record: AnyRecord, server: Server) -> Stream:
        """A Stream as the server describes it (``getstreams``): no local file is needed."""
        self = cls.__new__(cls)
        self._id = record["id"]
        self._server = server
        self._size = None
        self._frames = None
        if record["status"] == DecodeStatus.DELETED:  # a tombstone keeps only its id
            self._address, self._path = None, ""
            self._filetype = None
            self._tags = {}
            self._format = _TOMBSTONE_FORMAT
        else:
            if record["kind"] == "socket":
                host, _, port = record["source"].rpartition(":")
                self._address, self._path = (host, int(port)), None
            else:
                self._address, self._path = None, record["source"]
            self._filetype = record["filetype"]
            self._tags = dict(record["tags"])
            fmt = record["format"]
            self._format = AudioFormat(
                filetype=self._filetype or "RAW",
                encoding=Encoding.parse(fmt["encoding"]),
                sampwidth=fmt["sampwidth"],
                samprate=fmt["samprate"],
                channels=fmt["channels"],
                endian=Endian.parse(fmt["endian"]),
            )
        self._apply(record)
        return self

    def _apply(self, record: AnyRecord) -> None:
        """Take the server's view of this stream (called by the Server on refresh)."""
        self.status = DecodeStatus.parse(record["status"])
        if record["status"] == DecodeStatus.DELETED:
            self.start = self.end = None
            self.error = None
            self._stats = {}
            self._sourceseconds = None
            self._listeners = []
            return
        self.start = _parse_time(record["start"])
        self.end = _parse_time(record["end"])
        self.error = record["error"]
        self._stats = dict(record["stats"])
        self._sourceseconds = record["sourceseconds"]
        self._listeners = [dict(x) for x in record["listeners"]]

    def refresh(self) -> None:
        """Refresh the stream's state from its server."""
        self._require_server().refreshstreams(self)

    def joinstart(self, timeout: float | None = None) -> bool:
        """Wait for decoding to start; True if it started (state is refreshed)."""
        self._require_server().joinstartstreams(self, timeout=timeout)
        return self.status is not None and self.status is not DecodeStatus.QUEUED

    def stats(self) -> dict[str, Any]:
        """Decoding stats as of the last refresh (audio seconds, real-time factor, counts...)."""
        self._require_server()
        return dict(self._stats)

    def sourceseconds(self) -> float | None:
        """Seconds of source audio the server had received as of the last refresh, or None."""
        self._require_server()
        return self._sourceseconds

    def listenerinfo(self) -> list[dict[str, Any]]:
        """Who was listening to this stream as of the last refresh."""
        self._require_server()
        return [dict(x) for x in self._listeners]

    def pause(self) -> bool:
        """Pause decoding; True once the stream is PAUSED."""
        return self._require_server().pausestreams(self)

    def resume(self, fromtime: datetime | int | None = None) -> bool:
        """Resume decoding: from the pause (None), from a datetime, or from now (-1)."""
        return self._require_server().resumestreams(self, fromtime=fromtime)

    def close(self) -> bool:
        """Stop decoding (CLOSED); results so far are kept."""
        return self._require_server().closestreams(self)

    def delete(self) -> bool:
        """Close the stream and remove all its artifacts from the server."""
        return self._require_server().deletestreams(self)

    def utterances(self) -> list[Utterance]:
        """The utterances committed so far, in time order."""
        return self._require_server().utterances(self)

    def listen(self) -> Iterator[Utterance]:
        """Iterate over utterances as they are decoded, until the stream finishes."""
        return self._require_server().listen(self)


_TOMBSTONE_FORMAT = AudioFormat("RAW", Encoding.SPCM, 2, 16000)
"""What a deleted stream's format reads as: the server keeps none."""


def _parse_time(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def createstreams(sources: Iterable[Source], **metadata: Any) -> list[Stream]:
    """Create a Stream for each source, each with the given metadata.

    Every source is tried; if any fail, one :class:`StreamsError` lists each
    failure (``.errors``) and carries the Streams that were made (``.streams``).
    """
    streams: list[Stream] = []
    errors: list[InvalidStreamError] = []
    for source in sources:
        try:
            streams.append(Stream(source, **metadata))
        except InvalidStreamError as exc:
            errors.append(exc)
    if errors:
        raise StreamsError(errors, streams)
    return streams


def createdirstreams(
    dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    exts: Iterable[str] | str | None = None,
    filters: Iterable[str] | str | None = None,
    recursive: bool = True,
    **metadata: Any,
) -> list[Stream]:
    """Create Streams for the audio files in a directory (or list of directories).

    ``exts``: extensions to include, with or without the dot, any case (None:
    every file). ``filters``: regular expressions searched in each file's full
    absolute path; a file is included when one matches. ``recursive``: descend
    into subdirectories. Files come in sorted order. A missing directory, or
    files that cannot become Streams, raise one :class:`StreamsError` listing
    every failure, with the good Streams in ``.streams``.
    """
    if isinstance(dirs, str | os.PathLike):
        dirs = [dirs]
    try:
        selector = FileSelector.create(exts, filters)
    except ValueError as exc:
        raise InvalidStreamError(f"createdirstreams: {exc}", source=str(dirs)) from None
    roots = [os.fspath(d) for d in dirs]
    missing = [
        InvalidStreamError(f"Cannot read directory {d}: it does not exist", source=d)
        for d in roots
        if not os.path.isdir(d)
    ]
    try:
        streams = createstreams(
            walk_many(selector, [d for d in roots if os.path.isdir(d)], recursive=recursive),
            **metadata,
        )
    except StreamsError as exc:
        raise StreamsError(missing + exc.errors, exc.streams) from None
    if missing:
        raise StreamsError(missing, streams)
    return streams
