"""The HTTP API's request bodies, validated once at the boundary (pydantic).

Anything that does not fit is answered 400/422 with a JSON error naming the
field, never a 500.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from svwatchd.model.contract import (
    MAX_CHANNELS,
    MAX_SAMPRATE,
    MAX_SAMPWIDTH,
    MAX_TAGS,
    MIN_SAMPRATE,
    STREAM_ID_PATTERN,
    TAG_KEY_PATTERN,
)
from svwatchd.model.format import AudioFormat
from svwatchd.server.records import StreamSpec

__all__ = [
    "MAX_BATCH",
    "ErrorBody",
    "ErrorDetail",
    "FileSource",
    "FormatBody",
    "IdsRequest",
    "QueryRequest",
    "ResumeRequest",
    "SocketSource",
    "StreamBody",
    "StreamId",
    "SubmitRequest",
    "TagKey",
    "TagValue",
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
    encoding: Literal["SPCM", "UPCM", "ULAW", "ALAW"]
    sampwidth: Annotated[int, Field(ge=1, le=MAX_SAMPWIDTH)]
    samprate: Annotated[int, Field(ge=MIN_SAMPRATE, le=MAX_SAMPRATE)]
    channels: Annotated[int, Field(ge=1, le=MAX_CHANNELS)] = 1
    endian: Literal["LITTLE", "BIG"] = "LITTLE"


class StreamBody(_Strict):
    id: StreamId
    source: Annotated[FileSource | UploadSource | SocketSource, Field(discriminator="type")]
    filetype: Literal["WAV", "RAW"] | None = None
    format: FormatBody
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=MAX_TAGS)

    def to_spec(self) -> StreamSpec:
        """The validated submission (``ValueError`` if the format is inconsistent)."""
        src = self.source
        fmt = AudioFormat(
            filetype=self.filetype or "RAW",
            encoding=self.format.encoding,  # type: ignore[arg-type]
            sampwidth=self.format.sampwidth,
            samprate=self.format.samprate,
            channels=self.format.channels,
            endian=self.format.endian,  # type: ignore[arg-type]
        )
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
    fields: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail
