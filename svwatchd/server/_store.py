"""svserver's durable state: streams, their utterances and tombstones, in SQLite (WAL).

Every state change is committed before the server acts on it or answers the
client (``synchronous=FULL``: a committed submission survives a crash and a
power loss). The schema carries a version and migrates forward on open; a
database written by a newer svserver is refused.

This module owns the tables and reads them; a stream's status is written only
by :mod:`svwatchd.server._lifecycle`, through :meth:`Store.transaction`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from svwatchd._sqlite import connect, immediate, migrate, open_checked
from svwatchd.model.contract import LANGUAGE_AUTO, FileType, as_filetype
from svwatchd.model.enums import DecodeStatus, Encoding, Endian
from svwatchd.model.format import AudioFormat
from svwatchd.model.metadata import TagValue
from svwatchd.model.record import SourceKind
from svwatchd.model.speechdata import Utterance, Word
from svwatchd.server._datadir import DB_NAME, lock
from svwatchd.server._engines.base import Ask, OnForeign, Task
from svwatchd.server._schema import MIGRATIONS, SCHEMA_VERSION, SqlValue

__all__ = [
    "SCHEMA_VERSION",
    "NewStream",
    "SqlValue",
    "Store",
    "StreamRow",
    "UtteranceRow",
    "insert_utterances",
    "recount",
]

_COLUMNS = (
    "id, seq, kind, source, path, host, port, filetype, encoding, sampwidth, samprate, "
    "channels, endian, tags, spec, status, error, attempts, created, queued, started, ended, "
    "anchor, skip_before, resume_status, sourceseconds, received_bytes, decoded_bytes, "
    "decoded_seconds, decode_wall, queue_wait, utterance_count, word_count, heard_language, "
    "language_probability"
)

_KINDS: Mapping[str, SourceKind] = {"file": "file", "upload": "upload", "socket": "socket"}


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One stream as stored, its columns typed."""

    id: str
    seq: int
    kind: SourceKind
    source: str
    path: str | None
    host: str | None
    port: int | None
    filetype: FileType | None
    encoding: Encoding
    sampwidth: int
    samprate: int
    channels: int
    endian: Endian
    tags: dict[str, TagValue]
    spec: str
    status: DecodeStatus
    error: str | None
    attempts: int
    created: float
    queued: float
    started: float | None
    ended: float | None
    anchor: float | None
    skip_before: float | None
    resume_status: DecodeStatus | None
    sourceseconds: float | None
    received_bytes: int
    decoded_bytes: int
    decoded_seconds: float
    decode_wall: float
    queue_wait: float | None
    utterance_count: int
    word_count: int
    heard_language: str | None  # the language heard so far (given or detected)
    language_probability: float | None  # ... its detection's probability (None: given)

    @property
    def format(self) -> AudioFormat:
        """The source's format as submitted (a socket's is RAW)."""
        return AudioFormat(
            filetype=self.filetype or "RAW",
            encoding=self.encoding,
            sampwidth=self.sampwidth,
            samprate=self.samprate,
            channels=self.channels,
            endian=self.endian,
        )

    @property
    def language(self) -> str | None:
        """The ``language`` tag (validated at submission), if any; None for ``auto`` too
        (the language is to be detected)."""
        lang = self.tags.get("language")
        return lang if isinstance(lang, str) and lang != LANGUAGE_AUTO else None

    @property
    def ask(self) -> Ask:
        """What the engine is asked for each of this stream's clips (its tags: ``language``,
        ``task``, ``on_foreign``, ``prompt``, ``temperature``; validated at submission). An
        untagged stream whose language a detection already found (a long file's first piece,
        a socket's first segment with speech) is asked in that language: detected once, not
        again for every piece."""
        task: Task = "translate" if self.tags.get("task") == "translate" else "transcribe"
        choice = self.tags.get("on_foreign")
        on_foreign: OnForeign = (
            "hold" if choice == "hold" else "route" if choice == "route" else "decode"
        )
        language = self.language
        if language is None and self.language_probability is not None:
            language = self.heard_language
        prompt = self.tags.get("prompt")
        heat = self.tags.get("temperature")
        temperature = float(heat) if isinstance(heat, int | float) and heat is not True else None
        return Ask(
            language, task, on_foreign, prompt if isinstance(prompt, str) else None, temperature
        )

    @property
    def track(self) -> int | str | None:
        """The ``track`` tag: which audio track of a container, by number or language."""
        track = self.tags.get("track")
        return track if isinstance(track, int | str) and not isinstance(track, bool) else None

    @classmethod
    def _from_sql(cls, row: sqlite3.Row) -> StreamRow:
        values = dict(row)
        resume = values["resume_status"]
        filetype = values["filetype"]
        values.update(
            kind=_KINDS[values["kind"]],
            filetype=None if filetype is None else as_filetype(filetype),
            encoding=Encoding(values["encoding"]),
            endian=Endian(values["endian"]),
            tags=json.loads(values["tags"]),
            status=DecodeStatus(values["status"]),
            resume_status=None if resume is None else DecodeStatus(resume),
        )
        return cls(**values)


@dataclass(frozen=True, slots=True)
class NewStream:
    """A stream about to be stored (QUEUED): what the submission fixed."""

    id: str
    kind: SourceKind
    source: str
    path: str | None  # the file the server reads (file, upload)
    host: str | None
    port: int | None
    format: AudioFormat
    tags: Mapping[str, TagValue]
    spec: str  # canonical submission text, compared on resubmission
    created: float
    anchor: float | None  # wall-clock time of the audio's t=0, if known
    sourceseconds: float | None


@dataclass(frozen=True, slots=True)
class UtteranceRow:
    """One committed utterance, with its wall-clock end and whether resume skipped it."""

    utterance: Utterance
    wall_end: float | None
    skipped: bool


class Store:
    """The server's SQLite database: one connection behind a lock.

    svserver calls it from its event loop thread; the lock is for the metrics
    endpoint, whose scrape reads :meth:`counts` from its own thread. A database that fails
    its check at start is moved aside (``corrupt_path`` says where) and a fresh one used.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd = lock(self.path)
        self._lock = threading.RLock()
        # a damaged database is moved aside (corrupt_path), never served: queries on it
        # would fail for ever, one 500 after another
        self._db, self.corrupt_path = open_checked(
            self.path, lambda: connect(self.path, timeout=30), DB_NAME
        )
        self._db.execute("PRAGMA foreign_keys=ON")
        with self.transaction() as db:
            migrate(
                db,
                MIGRATIONS,
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

    def read(
        self, sql: str, args: Sequence[SqlValue] | Mapping[str, SqlValue] = ()
    ) -> list[sqlite3.Row]:
        """Every row of one read-only query."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- streams ----------------------------------------------------------------------

    def insert_streams(self, streams: Sequence[NewStream]) -> None:
        """Store new streams, QUEUED, in one transaction."""
        with self.transaction() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM streams").fetchone()[0]
            for s in streams:
                seq += 1
                fmt = s.format
                db.execute(
                    "INSERT INTO streams (id, seq, kind, source, path, host, port, filetype, "
                    "encoding, sampwidth, samprate, channels, endian, tags, spec, status, "
                    "created, queued, anchor, sourceseconds) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        s.id,
                        seq,
                        s.kind,
                        s.source,
                        s.path,
                        s.host,
                        s.port,
                        None if s.kind == "socket" else fmt.filetype,
                        fmt.encoding.value,
                        fmt.sampwidth,
                        fmt.samprate,
                        fmt.channels,
                        fmt.endian.value,
                        json.dumps(s.tags),
                        s.spec,
                        DecodeStatus.QUEUED.value,
                        s.created,
                        s.created,
                        s.anchor,
                        s.sourceseconds,
                    ),
                )

    def get(self, ids: Iterable[str]) -> dict[str, StreamRow]:
        """The stored streams among ``ids`` (tombstones included), by id."""
        ids = list(ids)
        out: dict[str, StreamRow] = {}
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            marks = ",".join("?" * len(chunk))
            for r in self.read(f"SELECT {_COLUMNS} FROM streams WHERE id IN ({marks})", chunk):
                out[r["id"]] = StreamRow._from_sql(r)
        return out

    def one(self, stream_id: str) -> StreamRow | None:
        """One stream, or None."""
        return self.get([stream_id]).get(stream_id)

    def with_status(self, status: DecodeStatus, *, limit: int) -> list[StreamRow]:
        """Up to ``limit`` streams in ``status``, oldest first."""
        sql = f"SELECT {_COLUMNS} FROM streams WHERE status = ? ORDER BY seq LIMIT ?"
        return [StreamRow._from_sql(r) for r in self.read(sql, (status.value, limit))]

    def queued_sockets(self, limit: int) -> list[StreamRow]:
        """QUEUED socket streams, oldest first, from their partial index, so a file backlog is
        not read. Named (INDEXED BY): left to itself SQLite's planner prefers the status index
        and walks every queued file on each dispatch (tens of ms with 10,000 queued). The
        literals must stay literals for the partial index to apply."""
        sql = (
            f"SELECT {_COLUMNS} FROM streams INDEXED BY streams_queued_sockets "
            "WHERE status='QUEUED' AND kind='socket' ORDER BY seq LIMIT ?"
        )
        return [StreamRow._from_sql(r) for r in self.read(sql, (limit,))]

    def counts(self) -> dict[str, int]:
        """Number of streams by status."""
        return {
            r[0]: r[1] for r in self.read("SELECT status, COUNT(*) FROM streams GROUP BY status")
        }

    def record_received(self, stream_id: str, received_bytes: int, seconds: float) -> None:
        """A socket stream's spool grew: ``received_bytes`` in all, ``seconds`` of audio."""
        with self.transaction() as db:
            db.execute(
                "UPDATE streams SET received_bytes = ?, sourceseconds = ? WHERE id = ?",
                (received_bytes, seconds, stream_id),
            )

    # -- utterances ---------------------------------------------------------------------

    def utterances(self, stream_id: str, *, after: int = -1) -> list[tuple[int, UtteranceRow]]:
        """The stream's utterances with index > ``after``, in order, skipped ones included."""
        rows = self.read(
            "SELECT idx, start, end, wall_end, text, confidence, words, skipped, channel, "
            "speaker, language FROM utterances WHERE stream_id=? AND idx > ? ORDER BY idx",
            (stream_id, after),
        )
        out = []
        for r in rows:
            words = tuple(Word(w[0], w[1], w[2], w[3]) for w in json.loads(r["words"]))
            utt = Utterance(
                r["start"],
                r["end"],
                r["text"],
                r["confidence"],
                words,
                r["channel"],
                r["speaker"],
                r["language"],
            )
            out.append((r["idx"], UtteranceRow(utt, r["wall_end"], bool(r["skipped"]))))
        return out

    # -- parameters ---------------------------------------------------------------------

    def params(self) -> dict[str, object]:
        """Stored parameter overrides."""
        return {r[0]: json.loads(r[1]) for r in self.read("SELECT name, value FROM params")}

    def set_params(self, values: Mapping[str, object]) -> None:
        """Store parameter overrides."""
        with self.transaction() as db:
            for k, v in values.items():
                db.execute("INSERT OR REPLACE INTO params VALUES (?, ?)", (k, json.dumps(v)))


def insert_utterances(
    db: sqlite3.Connection,
    stream_id: str,
    utterances: Sequence[tuple[Utterance, float | None]],
    *,
    skip_before: float | None,
) -> None:
    """Append utterances (each with its wall-clock end) inside the caller's transaction, and
    recount the stream's utterances and words; those ending before ``skip_before`` are
    kept but marked skipped (``resume(fromtime)``)."""
    idx = db.execute(
        "SELECT COALESCE(MAX(idx), -1) FROM utterances WHERE stream_id=?", (stream_id,)
    ).fetchone()[0]
    for utt, wall_end in utterances:
        idx += 1
        skipped = skip_before is not None and wall_end is not None and wall_end < skip_before
        db.execute(
            "INSERT INTO utterances (stream_id, idx, start, end, wall_end, text, confidence, "
            "words, skipped, channel, speaker, language) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
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
                utt.channel,
                utt.speaker,
                utt.language,
            ),
        )
    recount(db, stream_id)


def recount(db: sqlite3.Connection, stream_id: str) -> None:
    """Set the stream's utterance and word counts from its utterances not skipped."""
    db.execute(
        "UPDATE streams SET (utterance_count, word_count) = (SELECT COUNT(*), "
        "COALESCE(SUM(json_array_length(words)), 0) FROM utterances "
        "WHERE stream_id = :id AND skipped = 0) WHERE id = :id",
        {"id": stream_id},
    )
