"""The HTTP API's bodies: requests validated once at the boundary (pydantic), and answers.

Anything that does not fit is answered 400/422 with a JSON error naming the
field, never a 500. The answers are documented here for ``/openapi.json``;
the stream records in them are :mod:`svwatchd.model.record`'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from typing_extensions import TypedDict

from svwatchd.errors import InvalidStreamError
from svwatchd.model.contract import (
    MAX_CHANNELS,
    MAX_SAMPRATE,
    MAX_SAMPWIDTH,
    MAX_TAGS,
    MIN_SAMPRATE,
    STREAM_ID_PATTERN,
    TAG_KEY_PATTERN,
    FileType,
)
from svwatchd.model.enums import Encoding, Endian
from svwatchd.model.format import AudioFormat
from svwatchd.model.record import AnyRecord
from svwatchd.server._submission import RejectionInfo, StreamSpec

__all__ = [
    "MAX_BATCH",
    "BulkAnswer",
    "ErrorBody",
    "ErrorDetail",
    "FileSource",
    "FormatBody",
    "IdsRequest",
    "QueryRequest",
    "RecordsAnswer",
    "RefreshAnswer",
    "ResumeRequest",
    "SocketSource",
    "StreamBody",
    "StreamId",
    "SubmitAnswer",
    "SubmitRequest",
    "TagKey",
    "TagValue",
    "UploadAnswer",
    "UploadSource",
]

StreamId = Annotated[str, Field(pattern=STREAM_ID_PATTERN)]
TagKey = Annotated[str, Field(pattern=TAG_KEY_PATTERN)]
TagValue = StrictStr | StrictBool | StrictInt | StrictFloat
MAX_BATCH = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSource(_Strict):
    type: Literal["file"]
    path: Annotated[str, Field(min_length=1, max_length=4096)]


class UploadSource(_Strict):
    type: Literal["upload"]
    path: Annotated[str, Field(min_length=1, max_length=4096)]
    mtime: float | None = None


class SocketSource(_Strict):
    type: Literal["socket"]
    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: Annotated[int, Field(ge=1, le=65535)]


class FormatBody(_Strict):
    encoding: Encoding
    sampwidth: Annotated[int, Field(ge=1, le=MAX_SAMPWIDTH)]
    samprate: Annotated[int, Field(ge=MIN_SAMPRATE, le=MAX_SAMPRATE)]
    channels: Annotated[int, Field(ge=1, le=MAX_CHANNELS)] = 1
    endian: Endian = Endian.LITTLE


class StreamBody(_Strict):
    id: StreamId
    source: Annotated[FileSource | UploadSource | SocketSource, Field(discriminator="type")]
    filetype: FileType | None = None
    format: FormatBody
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=MAX_TAGS)

    def to_spec(self) -> StreamSpec:
        """The validated submission (:class:`InvalidStreamError` if the format contradicts
        itself, e.g. 2-byte mu-law)."""
        src = self.source
        try:
            fmt = AudioFormat(
                filetype=self.filetype or "RAW",
                encoding=self.format.encoding,
                sampwidth=self.format.sampwidth,
                samprate=self.format.samprate,
                channels=self.format.channels,
                endian=self.format.endian,
            )
        except ValueError as exc:
            raise InvalidStreamError(str(exc), source=self.id, field="format") from None
        if isinstance(src, SocketSource):
            return StreamSpec(self.id, "socket", fmt, dict(self.tags), host=src.host, port=src.port)
        if isinstance(src, UploadSource):
            return StreamSpec(
                self.id, "upload", fmt, dict(self.tags), path=src.path, mtime=src.mtime
            )
        return StreamSpec(self.id, "file", fmt, dict(self.tags), path=src.path)


class SubmitRequest(_Strict):
    streams: Annotated[list[StreamBody], Field(max_length=MAX_BATCH)]


class IdsRequest(_Strict):
    ids: Annotated[list[StreamId], Field(max_length=MAX_BATCH)]


class ResumeRequest(IdsRequest):
    fromtime: datetime | Literal[-1] | None = None


class QueryRequest(_Strict):
    match: Annotated[list[dict[TagKey, TagValue]], Field(max_length=1000)] = Field(
        default_factory=list
    )


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[dict[str, object]] | None = None


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


class RecordsAnswer(TypedDict):
    """The streams asked about, as records (``query``: every one that matched)."""

    streams: list[AnyRecord]


class SubmitAnswer(RecordsAnswer):
    """The accepted streams' records, and the refused ones with the reason."""

    rejected: list[RejectionInfo]


class RefreshAnswer(RecordsAnswer):
    """The known streams' records (tombstones too), and the ids the server does not know."""

    missing: list[str]


class BulkAnswer(RecordsAnswer):
    """The streams' records after the action, and whether it succeeded for each id."""

    results: dict[str, bool]


class UploadAnswer(TypedDict):
    """An upload was stored: ``bytes`` of it, for the stream ``id`` to be submitted."""

    id: str
    bytes: int
