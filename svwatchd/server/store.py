"""svserver's durable state: streams, their utterances and tombstones, in SQLite (WAL).

Every state change is committed before the server acts on it or answers the
client (``synchronous=FULL``: a committed submission survives a crash and a
power loss). The schema carries a version and migrates forward on open; a
database written by a newer svserver is refused.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svwatchd.model.speechdata import Utterance
from svwatchd.sqlite import connect, immediate, lock_exclusively, migrate

__all__ = [
    "SCHEMA_VERSION",
    "Store",
    "StreamRow",
    "UtteranceRow",
]

SCHEMA_VERSION = 2

# v2: the scheduler finds queued sockets without reading a file backlog
_QUEUED_SOCKETS = """
CREATE INDEX IF NOT EXISTS streams_queued_sockets ON streams(seq)
WHERE status='QUEUED' AND kind='socket';
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,              -- file | upload | socket
    source TEXT NOT NULL,            -- path as the client named it, or host:port
    path TEXT,                       -- the file the server reads (file, upload)
    host TEXT, port INTEGER,
    filetype TEXT,                   -- WAV | RAW | NULL (socket)
    encoding TEXT NOT NULL, sampwidth INTEGER NOT NULL, samprate INTEGER NOT NULL,
    channels INTEGER NOT NULL, endian TEXT NOT NULL,
    tags TEXT NOT NULL,              -- JSON object
    spec TEXT NOT NULL,              -- canonical JSON of the submission, for idempotency
    status TEXT NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL,
    queued REAL NOT NULL,
    started REAL, ended REAL,
    anchor REAL,                     -- wall-clock time (epoch s) of the audio's t=0, if known
    skip_before REAL,                -- resume(fromtime): drop utterances ending before this
    resume_status TEXT,              -- where a PAUSED stream goes on resume
    sourceseconds REAL,
    received_bytes INTEGER NOT NULL DEFAULT 0,  -- socket: bytes spooled
    decoded_bytes INTEGER NOT NULL DEFAULT 0,   -- socket: spooled bytes already decoded
    decoded_seconds REAL NOT NULL DEFAULT 0,
    decode_wall REAL NOT NULL DEFAULT 0,
    queue_wait REAL,
    utterance_count INTEGER NOT NULL DEFAULT 0,  -- committed, not skipped
    word_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS streams_status ON streams(status, seq);
CREATE TABLE IF NOT EXISTS utterances (
    stream_id TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start REAL NOT NULL, end REAL NOT NULL,
    wall_end REAL,                   -- wall-clock time the utterance ended, if known
    text TEXT NOT NULL, confidence REAL NOT NULL, words TEXT NOT NULL,
    skipped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_id, idx)
);
CREATE TABLE IF NOT EXISTS params (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = (
    "id, seq, kind, source, path, host, port, filetype, encoding, sampwidth, samprate, "
    "channels, endian, tags, spec, status, error, attempts, created, queued, started, ended, "
    "anchor, skip_before, resume_status, sourceseconds, received_bytes, decoded_bytes, "
    "decoded_seconds, decode_wall, queue_wait, utterance_count, word_count"
)


def _when(col: str) -> str:
    return f"strftime('%Y-%m-%dT%H:%M:%fZ', {col}, 'unixepoch')"


# A stream's record (what refresh and getstreams answer), built by SQLite itself:
# refreshing 10k streams must not cost 10k Python dicts.
_RECORD_JSON = f"""
CASE WHEN status = 'DELETED' THEN json_object('id', id, 'status', 'DELETED') ELSE json_object(
  'id', id, 'status', status, 'error', error, 'kind', kind, 'source', source,
  'filetype', filetype,
  'format', json_object('encoding', encoding, 'sampwidth', sampwidth, 'samprate', samprate,
                        'channels', channels, 'endian', endian),
  'tags', json(tags), 'attempts', attempts,
  'created', {_when("created")}, 'start', {_when("started")}, 'end', {_when("ended")},
  'sourceseconds', sourceseconds,
  'stats', json_object(
    'audio_seconds_received', sourceseconds, 'audio_seconds_decoded', decoded_seconds,
    'decode_seconds', decode_wall,
    'real_time_factor', CASE WHEN decoded_seconds > 0 THEN decode_wall / decoded_seconds END,
    'queue_wait', queue_wait, 'utterances', utterance_count, 'words', word_count),
  'listeners', json('[]')) END
"""


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One stream as stored."""

    id: str
    seq: int
    kind: str
    source: str
    path: str | None
    host: str | None
    port: int | None
    filetype: str | None
    encoding: str
    sampwidth: int
    samprate: int
    channels: int
    endian: str
    tags: dict[str, Any]
    spec: str
    status: str
    error: str | None
    attempts: int
    created: float
    queued: float
    started: float | None
    ended: float | None
    anchor: float | None
    skip_before: float | None
    resume_status: str | None
    sourceseconds: float | None
    received_bytes: int
    decoded_bytes: int
    decoded_seconds: float
    decode_wall: float
    queue_wait: float | None
    utterance_count: int
    word_count: int

    @classmethod
    def _from_sql(cls, row: sqlite3.Row) -> StreamRow:
        values = dict(row)
        values["tags"] = json.loads(values["tags"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class UtteranceRow:
    """One committed utterance, with its wall-clock end and whether resume skipped it."""

    utterance: Utterance
    wall_end: float | None
    skipped: bool


class Store:
    """The server's SQLite database. Thread-safe: one connection behind a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        lock = self.path.with_suffix(".lock")
        self._lock_fd = lock_exclusively(
            lock, program="svserver", remedy="stop it or choose another --data-dir"
        )
        self._lock = threading.RLock()
        self._db = connect(self.path, timeout=30)
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.transaction() as db:
            migrate(
                db,
                {1: _SCHEMA, 2: _QUEUED_SOCKETS},
                SCHEMA_VERSION,
                path=self.path,
                program="svserver",
                remedy="use another --data-dir",
            )

    def close(self) -> None:
        """Close the database and release the data directory (idempotent)."""
        with self._lock:
            self._db.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: committed on exit, rolled back on error (a failed COMMIT too)."""
        with self._lock, immediate(self._db) as db:
            yield db

    # -- streams ----------------------------------------------------------------------

    def insert_streams(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert new streams (dicts of column values, without ``seq``) in one transaction."""
        with self.transaction() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM streams").fetchone()[0]
            for row in rows:
                seq += 1
                values = dict(row, seq=seq, tags=json.dumps(row["tags"]))
                cols = ", ".join(values)
                marks = ", ".join(f":{c}" for c in values)
                db.execute(f"INSERT INTO streams ({cols}) VALUES ({marks})", values)

    def get(self, ids: Iterable[str]) -> dict[str, StreamRow]:
        """The stored streams among ``ids`` (tombstones included), by id."""
        ids = list(ids)
        out: dict[str, StreamRow] = {}
        with self._lock:
            for i in range(0, len(ids), 900):
                chunk = ids[i : i + 900]
                marks = ",".join("?" * len(chunk))
                for r in self._db.execute(
                    f"SELECT {_COLUMNS} FROM streams WHERE id IN ({marks})", chunk
                ):
                    out[r["id"]] = StreamRow._from_sql(r)
        return out

    def records_json(self, ids: Sequence[str]) -> dict[str, str]:
        """Each known stream's record as JSON text, by id (tombstones as DELETED)."""
        out: dict[str, str] = {}
        with self._lock:
            for i in range(0, len(ids), 900):
                chunk = list(ids[i : i + 900])
                marks = ",".join("?" * len(chunk))
                out.update(
                    self._db.execute(
                        f"SELECT id, {_RECORD_JSON} FROM streams WHERE id IN ({marks})", chunk
                    ).fetchall()
                )
        return out

    def live_records_json(self) -> list[tuple[str, str, str]]:
        """(id, tags JSON, record JSON) of every stream not deleted, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, tags, {_RECORD_JSON} FROM streams "
                "WHERE status != 'DELETED' ORDER BY seq"
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def one(self, stream_id: str) -> StreamRow | None:
        """One stream, or None."""
        return self.get([stream_id]).get(stream_id)

    def with_status(self, *statuses: str, limit: int | None = None) -> list[StreamRow]:
        """Streams in any of ``statuses``, oldest first."""
        marks = ",".join("?" * len(statuses))
        sql = f"SELECT {_COLUMNS} FROM streams WHERE status IN ({marks}) ORDER BY seq"
        args: list[Any] = list(statuses)
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return self._streams(sql, args)

    def queued_sockets(self, limit: int) -> list[StreamRow]:
        """QUEUED socket streams, oldest first (a partial index: a file backlog is not read;
        the literals must stay literals for SQLite to use it)."""
        sql = (
            f"SELECT {_COLUMNS} FROM streams WHERE status='QUEUED' AND kind='socket' "
            "ORDER BY seq LIMIT ?"
        )
        return self._streams(sql, [limit])

    def _streams(self, sql: str, args: Sequence[Any]) -> list[StreamRow]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [StreamRow._from_sql(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of streams by status."""
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM streams GROUP BY status")
            return {r[0]: r[1] for r in rows}

    def update(self, stream_id: str, **values: Any) -> None:
        """Set columns of one stream, committed at once."""
        self.update_many([stream_id], **values)

    def update_many(self, ids: Sequence[str], **values: Any) -> None:
        """Set the same columns on several streams in one transaction."""
        sets = ", ".join(f"{k} = :{k}" for k in values)
        with self.transaction() as db:
            for sid in ids:
                db.execute(f"UPDATE streams SET {sets} WHERE id = :_id", dict(values, _id=sid))

    def requeue_interrupted(self) -> list[str]:
        """At start: streams left ACTIVE by a stop or a crash go back to QUEUED.

        A file stream's utterances are committed with its final state, so an
        interrupted one has none to duplicate; a socket stream's are committed
        with the spool offset they cover, so it reconnects and goes on from there.
        Returns the requeued ids.
        """
        with self.transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM streams WHERE status='ACTIVE'")]
            db.execute("UPDATE streams SET status='QUEUED' WHERE status='ACTIVE'")
            db.execute(
                "UPDATE streams SET resume_status='QUEUED' "
                "WHERE status='PAUSED' AND resume_status='ACTIVE'"
            )
        return ids

    # -- utterances ---------------------------------------------------------------------

    def add_utterances(
        self,
        stream_id: str,
        utterances: Sequence[tuple[Utterance, float | None]],
        *,
        skip_before: float | None,
        **stream_values: Any,
    ) -> None:
        """Append utterances (each with its wall-clock end) and update the stream, atomically."""
        with self.transaction() as db:
            idx = db.execute(
                "SELECT COALESCE(MAX(idx), -1) FROM utterances WHERE stream_id=?", (stream_id,)
            ).fetchone()[0]
            for utt, wall_end in utterances:
                idx += 1
                skipped = (
                    skip_before is not None and wall_end is not None and wall_end < skip_before
                )
                db.execute(
                    "INSERT INTO utterances VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        stream_id,
                        idx,
                        utt.start,
                        utt.end,
                        wall_end,
                        utt.text,
                        utt.confidence,
                        json.dumps([[w.text, w.start, w.end, w.confidence] for w in utt.words]),
                        int(skipped),
                    ),
                )
            self._recount(db, stream_id)
            if stream_values:
                sets = ", ".join(f"{k} = :{k}" for k in stream_values)
                db.execute(
                    f"UPDATE streams SET {sets} WHERE id = :_id", dict(stream_values, _id=stream_id)
                )

    @staticmethod
    def _recount(db: sqlite3.Connection, stream_id: str) -> None:
        db.execute(
            "UPDATE streams SET (utterance_count, word_count) = (SELECT COUNT(*), "
            "COALESCE(SUM(json_array_length(words)), 0) FROM utterances "
            "WHERE stream_id = :id AND skipped = 0) WHERE id = :id",
            {"id": stream_id},
        )

    def skip_utterances_before(self, stream_id: str, wall: float) -> None:
        """Mark the stream's utterances that ended before ``wall`` as skipped."""
        with self.transaction() as db:
            db.execute(
                "UPDATE utterances SET skipped=1 WHERE stream_id=? AND wall_end < ?",
                (stream_id, wall),
            )
            self._recount(db, stream_id)

    def utterances(self, stream_id: str, *, after: int = -1) -> list[tuple[int, UtteranceRow]]:
        """The stream's utterances with index > ``after``, in order, skipped ones included."""
        from svwatchd.model.speechdata import Word

        with self._lock:
            rows = self._db.execute(
                "SELECT idx, start, end, wall_end, text, confidence, words, skipped "
                "FROM utterances WHERE stream_id=? AND idx > ? ORDER BY idx",
                (stream_id, after),
            ).fetchall()
        out = []
        for r in rows:
            words = tuple(Word(w[0], w[1], w[2], w[3]) for w in json.loads(r["words"]))
            utt = Utterance(r["start"], r["end"], r["text"], r["confidence"], words)
            out.append((r["idx"], UtteranceRow(utt, r["wall_end"], bool(r["skipped"]))))
        return out

    def retry(self, ids: Sequence[str]) -> None:
        """Re-queue streams that ended in ERROR: one more attempt, from a clean slate."""
        now = time.time()
        with self.transaction() as db:
            for sid in ids:
                db.execute("DELETE FROM utterances WHERE stream_id=?", (sid,))
                db.execute(
                    "UPDATE streams SET status='QUEUED', error=NULL, queued=?, started=NULL, "
                    "ended=NULL, attempts=attempts+1, utterance_count=0, word_count=0, "
                    "decoded_seconds=0, decode_wall=0, decoded_bytes=0 WHERE id=?",
                    (now, sid),
                )

    def tombstone(self, stream_id: str) -> None:
        """Delete the stream's utterances and mark it DELETED (the id stays reserved)."""
        with self.transaction() as db:
            db.execute("DELETE FROM utterances WHERE stream_id=?", (stream_id,))
            db.execute(
                "UPDATE streams SET status='DELETED', path=NULL, tags='{}', error=NULL, "
                "ended=COALESCE(ended, ?) WHERE id=?",
                (time.time(), stream_id),
            )

    # -- parameters ---------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        """Stored parameter overrides."""
        with self._lock:
            return {r[0]: json.loads(r[1]) for r in self._db.execute("SELECT * FROM params")}

    def set_params(self, values: Mapping[str, Any]) -> None:
        """Store parameter overrides."""
        with self.transaction() as db:
            for k, v in values.items():
                db.execute("INSERT OR REPLACE INTO params VALUES (?, ?)", (k, json.dumps(v)))
