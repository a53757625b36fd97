"""What a submission is, and what it takes for svserver to accept one stream of it.

``StreamSpec`` is a validated submission (the HTTP layer builds it);
:class:`Admission` turns one into a :class:`~svwatchd.server._store.NewStream`
or a :class:`Rejection`. The server checks only what it must at submission
(the path is allowed, exists and is readable; a socket is allowed; the tags
it acts on are sound); malformed audio is accepted and ends in ERROR with a
message naming the file. A refusal is per stream, so one bad file never
blocks a batch: ``POST /v1/streams`` answers 200 with a ``rejected`` list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime

from typing_extensions import TypedDict

from svwatchd._decode import duration_seconds
from svwatchd.errors import AudioDecodeError, PathNotAllowedError, SocketNotAllowedError
from svwatchd.model.contract import LANGUAGE_AUTO
from svwatchd.model.enums import DecodeStatus
from svwatchd.model.format import AudioFormat
from svwatchd.model.metadata import RESERVED_TAGS, TagValue, parse_reserved_tag
from svwatchd.model.record import SourceKind
from svwatchd.server._config import ServerConfig
from svwatchd.server._store import NewStream, StreamRow
from svwatchd.server._uploads import Uploads

__all__ = [
    "Admission",
    "EngineInfo",
    "Refused",
    "Rejection",
    "RejectionInfo",
    "StreamSpec",
]

EngineInfo = Callable[[], Mapping[str, object]]
"""The engine's facts (``multilingual``, ``model``, ``engine``), as the worker pool tells them."""

_FORMAT_FIELDS = fields(AudioFormat)


@dataclass(frozen=True)
class StreamSpec:
    """One stream as submitted: its id, its source, its format and tags."""

    id: str
    kind: SourceKind
    format: AudioFormat
    tags: dict[str, TagValue] = field(default_factory=dict)
    path: str | None = None  # file: the path on the server; upload: the client's file name
    host: str | None = None
    port: int | None = None
    mtime: float | None = None  # the client's file mtime (uploads), to anchor wall time

    def canonical(self) -> str:
        """A stable JSON form; the same submission twice gives the same text.

        Stored with each stream and compared on resubmission, so its text must
        never change between versions (a test pins it).
        """
        fmt = self.format
        data = {
            "id": self.id,
            # the same file, whether its path or its bytes were sent
            "kind": "file" if self.kind == "upload" else self.kind,
            "format": {f.name: str(getattr(fmt, f.name)) for f in _FORMAT_FIELDS},
            "tags": self.tags,
            "path": self.path,
            "host": self.host,
            "port": self.port,
        }
        return json.dumps(data, sort_keys=True)

    @property
    def source(self) -> str:
        """How the stream names its source: a path, or ``host:port``."""
        if self.kind == "socket":
            return f"{self.host}:{self.port}"
        return self.path or ""


class RejectionInfo(TypedDict):
    """One refused stream in the answer to a submission."""

    id: str
    status: int  # as an HTTP status: 400 bad value, 404 missing, 409 conflict
    code: str  # machine-readable, e.g. path_not_found (the client uploads then)
    message: str


@dataclass(frozen=True)
class Rejection:
    """Why one stream of a submission was refused: an HTTP-like status and a machine code."""

    id: str
    status: int
    code: str
    message: str

    def as_dict(self) -> RejectionInfo:
        """JSON form."""
        return {"id": self.id, "status": self.status, "code": self.code, "message": self.message}


def _retaggable(old: StreamRow, spec: StreamSpec) -> bool:
    """True when ``spec`` is ``old`` (a stream that ended in ERROR) with other tags only."""
    if old.status is not DecodeStatus.ERROR:
        return False
    before, after = json.loads(old.spec), json.loads(spec.canonical())
    before.pop("tags", None)
    after.pop("tags", None)
    return bool(before == after)


class Refused(Exception):
    """One stream cannot be accepted; ``rejection`` says why."""

    def __init__(self, stream_id: str, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(stream_id, status, code, message)


class Admission:
    """The checks a new stream must pass, and the stream they make."""

    def __init__(self, config: ServerConfig, uploads: Uploads, engine_info: EngineInfo) -> None:
        self._config = config
        self._uploads = uploads
        self._engine_info = engine_info

    def resubmission(self, old: StreamRow, spec: StreamSpec) -> Rejection | None:
        """Why a stored stream's id cannot take this submission, or None: the same stream,
        or a stream that ended in ERROR submitted again with other tags only (a watch's
        metadata changed since, e.g. to decode a file held for its language); those tags
        are checked as a new stream's are."""
        if old.status is DecodeStatus.DELETED:
            return Rejection(
                spec.id, 409, "deleted", f"stream {spec.id} was deleted; its id cannot be reused"
            )
        if old.spec != spec.canonical() and _retaggable(old, spec):
            try:
                self._check_reserved(spec)
            except Refused as exc:
                return exc.rejection
            return None
        if old.spec != spec.canonical():
            return Rejection(
                spec.id,
                409,
                "id_conflict",
                f"stream id {spec.id} is already used for {old.source}; choose another id",
            )
        return None

    def admit(self, spec: StreamSpec, now: float) -> NewStream:
        """The new stream ``spec`` makes; :class:`Refused` if a check fails."""
        path: str | None = None
        anchor: float | None = None
        seconds: float | None = None
        if spec.kind == "socket":
            assert spec.host is not None and spec.port is not None
            try:
                self._config.check_socket(spec.host, spec.port)
            except SocketNotAllowedError as exc:
                raise Refused(spec.id, 400, "socket_not_allowed", str(exc)) from None
        else:
            path = self._source_path(spec)
            st = os.stat(path)
            try:
                seconds = duration_seconds(path, spec.format)
            except (AudioDecodeError, OSError):
                seconds = None  # decoding will fail with the full reason
            mtime = spec.mtime if spec.kind == "upload" and spec.mtime else st.st_mtime
            anchor = mtime - (seconds or 0.0)
        self._check_reserved(spec)
        recorded_at = spec.tags.get("recorded_at")
        if isinstance(recorded_at, str):
            when = datetime.fromisoformat(recorded_at)  # checked by _check_reserved
            anchor = (when if when.tzinfo else when.astimezone()).timestamp()
        return NewStream(
            id=spec.id,
            kind=spec.kind,
            source=spec.source,
            path=path,
            host=spec.host,
            port=spec.port,
            format=spec.format,
            tags=spec.tags,
            spec=spec.canonical(),
            created=now,
            anchor=anchor,
            sourceseconds=seconds,
        )

    def _check_reserved(self, spec: StreamSpec) -> None:
        """Reserved tags (``language``, ``track``, ``split_channels``...) by the one rule the
        client applies too; a ``language`` must also be one the engine's model decodes."""
        for name in RESERVED_TAGS:
            if name in spec.tags:
                try:
                    parse_reserved_tag(name, spec.tags[name])
                except ValueError as exc:
                    raise Refused(spec.id, 400, f"bad_{name}", f"{name}: {exc}") from None
        info = self._engine_info()
        for name in ("prompt", "temperature"):
            if name in spec.tags and info.get("engine") != "whisper":
                raise Refused(
                    spec.id,
                    400,
                    f"{name}_unsupported",
                    f"stream {spec.id} has a {name} tag, but svserver's engine "
                    f"{info.get('engine')} has no {name}; only Whisper takes one",
                )
        lang = spec.tags.get("language")
        translate = spec.tags.get("task") == "translate"
        if lang is None and not translate:
            return
        if info.get("multilingual", False) or (lang == "en" and not translate):
            return
        model = info.get("model", info.get("engine", "the model"))
        if translate:
            raise Refused(
                spec.id,
                400,
                "task_unsupported",
                f"stream {spec.id} asks for translation (task: translate), but svserver's "
                f"model {model} is English-only and cannot translate; run svserver with a "
                "multilingual model (--model base)",
            )
        if lang == LANGUAGE_AUTO:
            why = (
                f"stream {spec.id} asks for its language to be detected (language: auto), but "
                f"svserver's model {model} is English-only and cannot tell languages apart"
            )
        else:
            why = (
                f"stream {spec.id} is tagged language {lang!r}, but svserver's model {model} "
                "is English-only"
            )
        raise Refused(
            spec.id,
            400,
            "language_unsupported",
            f"{why}; run svserver with a multilingual model (--model base)",
        )

    def _source_path(self, spec: StreamSpec) -> str:
        if spec.kind == "upload":
            path = self._uploads.path(spec.id)
            if not path.is_file():
                raise Refused(
                    spec.id, 404, "upload_missing", f"no upload for stream {spec.id}; upload first"
                )
            return str(path)
        assert spec.path is not None
        if "\0" in spec.path:  # no file has one; the OS calls below would raise ValueError
            raise Refused(spec.id, 400, "bad_path", f"path {spec.path!r} contains a NUL byte")
        try:
            real = self._config.check_path(spec.path)
        except PathNotAllowedError as exc:
            # A path that is not there at all is reported as missing, so a remote
            # client may upload it; one that exists but is outside the roots is not.
            if not os.path.lexists(spec.path):
                raise Refused(
                    spec.id, 404, "path_not_found", f"{spec.path} does not exist on the server"
                ) from None
            raise Refused(spec.id, 400, "path_not_allowed", str(exc)) from None
        if not real.is_file():
            code = "path_not_found" if not real.exists() else "not_a_file"
            raise Refused(spec.id, 404, code, f"{spec.path} is not a readable file on the server")
        if not os.access(real, os.R_OK):
            raise Refused(spec.id, 400, "unreadable", f"{spec.path} is not readable by svserver")
        return str(real)
