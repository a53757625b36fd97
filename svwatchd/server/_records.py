"""Stream records as svserver answers them, built as JSON text by SQLite itself.

Refreshing 10,000 streams must not cost 10,000 Python dicts, so SQLite
writes each record (``json_object``) and this module only joins the texts.
The SQL is derived from the one definition of a record,
:class:`svwatchd.model.record.StreamRecord` (and ``TombstoneRecord``): each
key of the definition names its SQL expression in :data:`_FIELDS`, a nested
definition nests a ``json_object``, and a key missing on either side stops
svserver at import. The listeners, which live in memory, go in as one JSON
parameter, so a record is never parsed and written again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeAlias, get_type_hints

from typing_extensions import is_typeddict

from svwatchd.model.metadata import match_metadata
from svwatchd.model.record import ListenerInfo, StreamRecord, TombstoneRecord
from svwatchd.server._store import Store

__all__ = [
    "RECORD_SQL",
    "Listener",
    "Listeners",
    "Records",
    "SqlShape",
    "answer",
    "iso",
    "json_object_sql",
]

SqlShape: TypeAlias = Mapping[str, "str | SqlShape"]
"""For each key of a record definition, its SQL expression (a nested shape for a nested one)."""


def _when(col: str) -> str:
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {col}, 'unixepoch')"


_FORMAT_FIELDS: SqlShape = {
    "encoding": "encoding",
    "sampwidth": "sampwidth",
    "samprate": "samprate",
    "channels": "channels",
    "endian": "endian",
}
_FIELDS: SqlShape = {
    "id": "id",
    "status": "status",
    "error": "error",
    "kind": "kind",
    "source": "source",
    "filetype": "filetype",
    "format": _FORMAT_FIELDS,
    "tags": "json(tags)",
    "attempts": "attempts",
    "created": _when("created"),
    "start": _when("started"),
    "end": _when("ended"),
    "sourceseconds": "sourceseconds",
    "stats": {
        "audio_seconds_received": "sourceseconds",
        "audio_seconds_decoded": "decoded_seconds",
        "decode_seconds": "decode_wall",
        "real_time_factor": "CASE WHEN decoded_seconds > 0 THEN decode_wall / decoded_seconds END",
        "queue_wait": "queue_wait",
        "utterances": "utterance_count",
        "words": "word_count",
        "track": "track",
        "track_language": "track_language",
        "channels_decoded": "channels_decoded",
        "channels_repeated": "channels_repeated",
        "language": "heard_language",
        "language_probability": "language_probability",
        "language_mismatch": "language_mismatch",
        "language_mismatch_probability": "mismatch_probability",
        "task": "COALESCE(tags ->> '$.task', 'transcribe')",
    },
    # :listeners is {"<id>": [ListenerInfo, ...]} of the streams someone listens to
    "listeners": "COALESCE(:listeners -> ('$.\"' || id || '\"'), json_array())",
}
_TOMBSTONE_FIELDS: SqlShape = {"id": "id", "status": "status"}


def json_object_sql(definition: type, shape: SqlShape) -> str:
    """The ``json_object(...)`` expression that builds ``definition`` (a TypedDict) from
    ``shape``; ``ValueError`` unless the two have the same keys, in the same order."""
    hints = get_type_hints(definition)
    if list(hints) != list(shape):
        raise ValueError(
            f"{definition.__name__} has keys {list(hints)}, its SQL shape {list(shape)}"
        )
    parts = []
    for key, hint in hints.items():
        expr = shape[key]
        if is_typeddict(hint):
            if isinstance(expr, str):
                raise ValueError(f"{definition.__name__}.{key} is an object: give its shape")
            expr = json_object_sql(hint, expr)
        elif not isinstance(expr, str):
            raise ValueError(f"{definition.__name__}.{key} is not an object: give an expression")
        parts.append(f"'{key}', {expr}")
    return f"json_object({', '.join(parts)})"


RECORD_SQL = (
    f"CASE WHEN status = 'DELETED' THEN {json_object_sql(TombstoneRecord, _TOMBSTONE_FIELDS)} "
    f"ELSE {json_object_sql(StreamRecord, _FIELDS)} END"
)
"""One stream's record (``StreamRecord``, or ``TombstoneRecord`` once deleted) as JSON
text, from a row of ``streams``; takes the ``:listeners`` parameter."""


def iso(epoch: float) -> str:
    """An epoch time as ISO 8601 UTC with microseconds, ``Z``-suffixed."""
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Listener:
    """Someone following a stream's utterances live."""

    address: str
    since: float = field(default_factory=time.time)
    sent: int = 0

    def info(self) -> ListenerInfo:
        """The listener as ``listenerinfo()`` reports it."""
        return {"address": self.address, "since": iso(self.since), "sent": self.sent}


class Listeners:
    """Who follows which stream right now (in memory: a restart drops the connections)."""

    def __init__(self) -> None:
        self._by_stream: dict[str, list[Listener]] = {}

    def add(self, stream_id: str, address: str) -> Listener:
        """Someone at ``address`` starts following the stream."""
        listener = Listener(address)
        self._by_stream.setdefault(stream_id, []).append(listener)
        return listener

    def remove(self, stream_id: str, listener: Listener) -> None:
        """The listener stopped following."""
        listeners = self._by_stream.get(stream_id, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            self._by_stream.pop(stream_id, None)

    def as_json(self) -> str:
        """``{"<stream id>": [ListenerInfo, ...]}``: the records' ``:listeners`` parameter."""
        return json.dumps({sid: [x.info() for x in xs] for sid, xs in self._by_stream.items()})


class Records:
    """Records of stored streams, as JSON text."""

    def __init__(self, store: Store, listeners: Listeners) -> None:
        self._store = store
        self._listeners = listeners

    def by_id(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """The records of ``ids`` in that order (tombstones too), and the unknown ids."""
        rows = self._store.read(
            f"SELECT id, {RECORD_SQL} FROM streams WHERE id IN (SELECT value FROM json_each(:ids))",
            {"ids": json.dumps(list(ids)), "listeners": self._listeners.as_json()},
        )
        found: dict[str, str] = {r[0]: r[1] for r in rows}
        return [found[i] for i in ids if i in found], [i for i in ids if i not in found]

    def matching(self, matchers: Sequence[Mapping[str, object]]) -> list[str]:
        """Records of every stream not deleted, oldest first, matching any matcher (a dict of
        format fields and tags); all of them when there are no matchers."""
        columns = ", ".join(str(c) for c in _FORMAT_FIELDS.values())
        rows = self._store.read(
            f"SELECT {RECORD_SQL}, tags, {columns} FROM streams "
            "WHERE status != 'DELETED' ORDER BY seq",
            {"listeners": self._listeners.as_json()},
        )
        if not matchers:
            return [r[0] for r in rows]
        out = []
        for record, tags, *values in rows:
            fmt = dict(zip(_FORMAT_FIELDS, values, strict=True))
            if any(match_metadata(fmt, json.loads(tags), m) for m in matchers):
                out.append(record)
        return out


def answer(records: Sequence[str], **extra: object) -> bytes:
    """The JSON body ``{"streams": [<records>], **extra}`` around records that are JSON
    text already (``extra``: ``missing``, ``results`` or ``rejected``)."""
    rest = "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in extra.items())
    return ('{"streams":[' + ",".join(records) + "]" + rest + "}").encode()
