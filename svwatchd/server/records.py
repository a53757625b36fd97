"""What svserver receives and answers about streams: submissions and stream records.

``StreamSpec`` is a validated submission (the HTTP layer builds it); a record is
the JSON-ready dict the client applies to its ``Stream`` on every refresh.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from svwatchd.model.format import AudioFormat

__all__ = ["Listener", "StreamSpec", "iso"]

_FORMAT_FIELDS = fields(AudioFormat)


@dataclass(frozen=True)
class StreamSpec:
    """One stream as submitted: its id, its source, its format and tags."""

    id: str
    kind: Literal["file", "upload", "socket"]
    format: AudioFormat
    tags: dict[str, Any] = field(default_factory=dict)
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


@dataclass
class Listener:
    """Someone following a stream's utterances live."""

    address: str
    since: float
    sent: int = 0

    def info(self) -> dict[str, Any]:
        """The listener as ``listenerinfo()`` reports it."""
        return {"address": self.address, "since": iso(self.since), "sent": self.sent}


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC with microseconds, or None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
