"""The daemon's journal: every file version it has seen and where its work stands, in SQLite.

Each change is one transaction (WAL, ``synchronous=FULL``), committed at the
points the no-loss/no-duplicate promise needs: SUBMITTING *before* the HTTP
send (the stream id is chosen and kept, so a resend after a crash is
idempotent), DONE only *after* the outputs are durably written. One daemon per
state directory: ``journal.lock`` is held with ``flock`` for the process
lifetime. On open the database is checked (``PRAGMA quick_check``); a damaged
one is moved aside and `Journal.rebuilt_from_corruption` tells the caller to
reconcile from the outputs and the server (`Journal.rebuild`). A failed write
(disk full, failed fsync) is rolled back, the connection reopened, and
`JournalWriteError` raised: nothing is ever marked done that is not.

Queries are indexed and bounded; nothing loads the whole table, so 100k rows
cost the daemon a few MB.

This module is the `Journal` class itself. What it stores (schema, states and
their transitions, row types, errors) is in `svwatchd.daemon.journal_types`
and the recovery procedure behind `Journal.rebuild` in `svwatchd.daemon.rebuild`;
the public names of both are re-exported here, the import path to use.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from svwatchd.daemon.identity import FileIdentity
from svwatchd.daemon.journal_types import (
    ALLOWED_FROM,
    MIGRATIONS,
    SCHEMA_VERSION,
    FileRecord,
    FileState,
    RebuildReport,
)
from svwatchd.daemon.rebuild import rebuild_rows
from svwatchd.errors import JournalWriteError
from svwatchd.sqlite import (
    connect,
    immediate,
    lock_exclusively,
    migrate,
    open_checked,
)

__all__ = [
    "SCHEMA_VERSION",
    "FileRecord",
    "FileState",
    "Journal",
    "RebuildReport",
]

_WRITE_CODES = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)
_CHUNK = 900  # ids per IN (...) and rows per batch transaction
_S = FileState


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _marks(n: int) -> str:
    return ",".join("?" * n)


class Journal:
    """The journal of one state directory. Thread-safe: one connection behind an RLock.

    Raises `StateLockedError` when another daemon holds the directory,
    `SchemaVersionError` for a newer schema. Check `rebuilt_from_corruption`
    after opening: when True the previous database (moved to `corrupt_path`)
    was damaged and this one is empty until `rebuild` and a rescan refill it.
    """

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.state_dir / "journal.db"
        self.lock_path = self.state_dir / "journal.lock"
        self.rebuilt_from_corruption = False
        self.corrupt_path: Path | None = None
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._lock_fd = self._acquire_lock()
        try:
            self._open_checked()
        except BaseException:
            self.close()
            raise

    # -- opening ----------------------------------------------------------------------

    def _acquire_lock(self) -> int:
        return lock_exclusively(
            self.lock_path, program="svwatchd", remedy="one daemon per state directory"
        )

    def _connect(self) -> sqlite3.Connection:
        db = connect(self.path)
        try:
            db.execute("PRAGMA journal_size_limit=67108864")
        except BaseException:
            db.close()
            raise
        return db

    def _open_checked(self) -> None:
        self._db, self.corrupt_path = open_checked(self.path, self._connect, "journal.db")
        self.rebuilt_from_corruption = self.corrupt_path is not None
        self._migrate()

    def _migrate(self) -> None:
        with self.transaction() as db:
            migrate(
                db,
                MIGRATIONS,
                SCHEMA_VERSION,
                path=self.path,
                program="svwatchd",
                remedy="use another state directory",
            )

    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._lock_fd < 0:
            raise RuntimeError(f"Journal {self.path} is closed")
        if self._db is None:  # dropped after a failed write: start again from a clean state
            self._db = self._connect()
        return self._db

    def _free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.state_dir).free
        except OSError:
            return None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: committed on exit, rolled back on error.

        Disk full and I/O errors (a failed fsync) become `JournalWriteError`
        after the rollback, and the connection is reopened before the next
        use: a failed write is never assumed to have happened.
        """
        with self._lock:
            db = self._conn()
            try:
                with immediate(db):
                    yield db
            except (sqlite3.OperationalError, OSError) as exc:
                code = getattr(exc, "sqlite_errorcode", -1) & 0xFF
                if code not in _WRITE_CODES and getattr(exc, "errno", None) != errno.ENOSPC:
                    raise
                db.close()  # rolled back by immediate(); reopened clean before the next use
                self._db = None
                raise JournalWriteError(str(self.path), self._free_bytes(), exc) from exc

    # -- seeing files -----------------------------------------------------------------

    def _upsert(self, db: sqlite3.Connection, ident: FileIdentity, watch: str, now: float) -> bool:
        """Record ``ident`` as the path's current content; True if it is (again) PENDING."""
        db.execute(
            "UPDATE files SET state='SUPERSEDED', updated=? WHERE path=? AND fingerprint!=? "
            "AND state IN ('PENDING','HELD')",
            (now, ident.path, ident.fingerprint),
        )
        stat = (ident.size, ident.mtime_ns, ident.inode, ident.device)
        row = db.execute(
            "SELECT id, state, size, mtime_ns, inode, device FROM files "
            "WHERE path=? AND fingerprint=?",
            (ident.path, ident.fingerprint),
        ).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO files (watch, path, size, mtime_ns, inode, device, fingerprint, "
                "state, detected, updated) VALUES (?,?,?,?,?,?,?,'PENDING',?,?)",
                (watch, ident.path, *stat, ident.fingerprint, now, now),
            )
            return True
        revive = row["state"] in (_S.REMOVED, _S.SUPERSEDED)
        if revive or tuple(row)[2:] != stat:  # a touched file: refresh the stat cache only
            db.execute(
                "UPDATE files SET size=?, mtime_ns=?, inode=?, device=?, updated=?, "
                "state=CASE WHEN ? THEN 'PENDING' ELSE state END WHERE id=?",
                (*stat, now, revive, row["id"]),
            )
        return revive

    def upsert_seen(self, identity: FileIdentity, watch: str) -> FileRecord:
        """Record that ``identity`` is the current content of its path; return its row.

        A new (path, fingerprint) becomes a PENDING row. A known one keeps its
        state (a touched file is not a new version; only its stat fields are
        refreshed), except REMOVED or SUPERSEDED, which come back to PENDING
        (the content is there again). Older versions of the path that were
        never submitted (PENDING, HELD) become SUPERSEDED; submitted ones are
        kept, so both versions get outputs, in order.
        """
        with self.transaction() as db:
            self._upsert(db, identity, watch, time.time())
            row = db.execute(
                "SELECT * FROM files WHERE path=? AND fingerprint=?",
                (identity.path, identity.fingerprint),
            ).fetchone()
        return FileRecord._from_sql(row)

    def upsert_seen_many(self, identities: Iterable[FileIdentity], watch: str) -> int:
        """`upsert_seen` for many files (a scan), in transactions of 900; returns how many
        became PENDING (new or back). Each file's change is atomic on its own."""
        count = 0
        batch: list[FileIdentity] = []
        for ident in identities:
            batch.append(ident)
            if len(batch) >= _CHUNK:
                count += self._upsert_batch(batch, watch)
                batch.clear()
        return count + (self._upsert_batch(batch, watch) if batch else 0)

    def upsert_seen_batch(
        self, items: Sequence[tuple[FileIdentity, str]]
    ) -> list[tuple[FileIdentity, str, bool]]:
        """`upsert_seen` for (identity, watch) pairs in ONE transaction (one fsync for a
        burst); returns each with True when it became PENDING (new, or back)."""
        now = time.time()
        with self.transaction() as db:
            return [(ident, watch, self._upsert(db, ident, watch, now)) for ident, watch in items]

    def _upsert_batch(self, batch: Sequence[FileIdentity], watch: str) -> int:
        now = time.time()
        with self.transaction() as db:
            return sum(self._upsert(db, ident, watch, now) for ident in batch)

    # -- reading ----------------------------------------------------------------------

    def _select(self, sql: str, args: Sequence[Any] = ()) -> list[FileRecord]:
        with self._lock:
            rows = self._conn().execute(sql, args).fetchall()
        return [FileRecord._from_sql(r) for r in rows]

    def _one(self, where: str, args: Sequence[Any] = ()) -> FileRecord | None:
        rows = self._select(f"SELECT * FROM files WHERE {where} LIMIT 1", args)
        return rows[0] if rows else None

    def get(self, path: str, fingerprint: str) -> FileRecord | None:
        """The row of this version, or None."""
        return self._one("path=? AND fingerprint=?", (path, fingerprint))

    def by_id(self, file_id: int) -> FileRecord | None:
        """The row with this id, or None."""
        return self._one("id=?", (file_id,))

    def latest(self, path: str) -> FileRecord | None:
        """The version of ``path`` detected last: if its stat still matches, skip the rehash."""
        return self._one("path=? ORDER BY id DESC", (path,))

    def latest_many(self, paths: Iterable[str]) -> dict[str, FileRecord]:
        """`latest` for many paths in few queries (a burst): path -> its newest row."""
        out: dict[str, FileRecord] = {}
        paths = list(paths)
        for i in range(0, len(paths), _CHUNK):
            chunk = paths[i : i + _CHUNK]
            sql = (
                "SELECT * FROM files WHERE id IN (SELECT MAX(id) FROM files "
                f"WHERE path IN ({_marks(len(chunk))}) GROUP BY path)"
            )
            out.update((r.path, r) for r in self._select(sql, chunk))
        return out

    def oldest_pending(self) -> FileRecord | None:
        """The PENDING row detected first (the backlog's age), or None."""
        return self._one("state='PENDING' ORDER BY id")

    def by_state(
        self,
        *states: FileState,
        limit: int | None = None,
        watch: str | None = None,
        exclude: Iterable[int] = (),
    ) -> list[FileRecord]:
        """Rows in any of ``states`` (of one watch if given, without the ``exclude`` ids), in
        detection order; bounded by ``limit`` -- pass one: 100k rows would be 100k objects."""
        sql = f"SELECT * FROM files WHERE state IN ({_marks(len(states))})"
        args: list[Any] = list(states)
        if watch is not None:
            sql, args = sql + " AND watch=?", [*args, watch]
        skip = list(exclude)
        if skip:
            sql, args = sql + f" AND id NOT IN ({_marks(len(skip))})", [*args, *skip]
        sql += " ORDER BY id"
        if limit is not None:
            sql, args = sql + " LIMIT ?", [*args, limit]
        return self._select(sql, args)

    def by_stream_ids(self, ids: Iterable[str]) -> dict[str, FileRecord]:
        """The rows carrying these stream ids, by stream id."""
        out: dict[str, FileRecord] = {}
        ids = list(ids)
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            sql = f"SELECT * FROM files WHERE stream_id IN ({_marks(len(chunk))})"
            out.update((r.stream_id or "", r) for r in self._select(sql, chunk))
        return out

    def last_errors(self, n: int) -> list[FileRecord]:
        """The ``n`` rows with an error, most recently updated first."""
        sql = "SELECT * FROM files WHERE last_error IS NOT NULL ORDER BY updated DESC LIMIT ?"
        return self._select(sql, (n,))

    def counts_by_watch(self) -> dict[str, dict[FileState, int]]:
        """Number of rows per watch and state (for metrics and status)."""
        out: dict[str, dict[FileState, int]] = {}
        with self._lock:
            sql = "SELECT watch, state, COUNT(*) FROM files GROUP BY watch, state"
            for watch, state, n in self._conn().execute(sql):
                out.setdefault(watch, {})[FileState(state)] = n
        return out

    def count(self, *states: FileState) -> int:
        """Number of rows in any of ``states`` (indexed: cheap enough for every tick)."""
        with self._lock:
            sql = f"SELECT COUNT(*) FROM files WHERE state IN ({_marks(len(states))})"
            return int(self._conn().execute(sql, states).fetchone()[0])

    def known_paths(self, watch: str) -> set[str]:
        """Paths of ``watch`` with a row that is not REMOVED (a rescan ingests the others)."""
        with self._lock:
            sql = "SELECT path FROM files WHERE watch=? AND state!='REMOVED'"  # the set dedups
            return {r[0] for r in self._conn().execute(sql, (watch,))}

    def size(self) -> int:
        """Number of rows."""
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM files").fetchone()[0])

    # -- transitions ------------------------------------------------------------------

    def _move(
        self, to: FileState, rows: Iterable[tuple[int, Sequence[Any]]], sets: str = ""
    ) -> list[int]:
        """Move each (id, args for ``sets``) row that is in a state `ALLOWED_FROM` allows to
        ``to``, in one transaction; return the ids moved (others are left alone)."""
        allowed = sorted(ALLOWED_FROM[to])
        sql = (
            f"UPDATE files SET state=?, updated=?{sets} WHERE id=? "
            f"AND state IN ({_marks(len(allowed))})"
        )
        moved: list[int] = []
        with self.transaction() as db:
            for file_id, args in rows:
                if db.execute(sql, (to, time.time(), *args, file_id, *allowed)).rowcount:
                    moved.append(file_id)
        return moved

    def mark_submitting(
        self,
        ids: Sequence[int],
        stream_ids: Sequence[str],
        metadata: Sequence[Mapping[str, Any] | None],
        tags: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[int]:
        """Commit, BEFORE sending, that these rows go to the server under these stream ids
        with this resolved metadata (and tags). Returns the ids marked; send only those.
        Skipped: rows no longer PENDING/SUBMITTING/INFLIGHT (superseded, removed, done
        meanwhile) and rows that already carry another stream id (a row keeps its first
        id for ever, so a retry can never create a second stream)."""
        allowed = sorted(ALLOWED_FROM[_S.SUBMITTING])
        sql = (
            "UPDATE files SET state='SUBMITTING', stream_id=?, metadata=?, tags=?, submitted=?, "
            f"updated=? WHERE id=? AND state IN ({_marks(len(allowed))}) "
            "AND (stream_id IS NULL OR stream_id=?)"
        )
        tags = tags if tags is not None else [None] * len(ids)
        moved: list[int] = []
        now = time.time()
        with self.transaction() as db:
            for i, sid, meta, tag in zip(ids, stream_ids, metadata, tags, strict=True):
                args = (sid, _json(meta), _json(tag), now, now, i, *allowed, sid)
                if db.execute(sql, args).rowcount:
                    moved.append(i)
        return moved

    def mark_inflight(self, ids: Iterable[int]) -> int:
        """The server acknowledged these SUBMITTING rows; returns how many moved."""
        return len(self._move(_S.INFLIGHT, ((i, ()) for i in ids)))

    def mark_done(self, file_id: int) -> bool:
        """Outputs are durably written (call only AFTER that): the version is DONE."""
        return bool(self._move(_S.DONE, [(file_id, (time.time(),))], ", finished=?"))

    def mark_failed(self, file_id: int, reason: str) -> bool:
        """Bad input or retries exhausted: FAILED with ``reason``; never retried by itself."""
        args = (time.time(), reason)
        return bool(self._move(_S.FAILED, [(file_id, args)], ", finished=?, last_error=?"))

    def mark_held(self, file_id: int, reason: str) -> bool:
        """Waiting for a valid metadata file (``reason`` says what is wrong)."""
        return bool(self._move(_S.HELD, [(file_id, (reason,))], ", last_error=?"))

    def mark_removed(self, file_id: int) -> bool:
        """The file vanished before it was submitted."""
        return bool(self._move(_S.REMOVED, [(file_id, ())]))

    def release_held(self, ids: Iterable[int] | None = None, *, watch: str | None = None) -> int:
        """HELD rows back to PENDING: these ``ids``, else all of ``watch``, else all."""
        if ids is None:
            with self._lock:
                sql = "SELECT id FROM files WHERE state='HELD' AND (?1 IS NULL OR watch=?1)"
                ids = [r[0] for r in self._conn().execute(sql, (watch,))]
        return len(self._move(_S.PENDING, ((i, ()) for i in ids)))

    def due_for_cleanup(self, finished_before: float, limit: int) -> list[FileRecord]:
        """Finished rows (DONE/FAILED) whose server stream is still there, oldest first."""
        return self._select(
            "SELECT * FROM files WHERE cleaned IS NULL AND finished IS NOT NULL AND finished < ? "
            "AND stream_id IS NOT NULL AND state IN ('DONE', 'FAILED') ORDER BY finished LIMIT ?",
            (finished_before, limit),
        )

    def mark_cleaned(self, ids: Iterable[int]) -> None:
        """Their server streams were deleted (``delete_after``)."""
        now = time.time()
        with self.transaction() as db:
            db.executemany("UPDATE files SET cleaned=? WHERE id=?", [(now, i) for i in ids])

    def record_attempt(self, file_id: int, error: str | None = None) -> int:
        """Count one more (failed) attempt, keeping ``error``; returns the new count."""
        with self.transaction() as db:
            rows = db.execute(
                "UPDATE files SET attempts=attempts+1, updated=?, "
                "last_error=COALESCE(?, last_error) WHERE id=? RETURNING attempts",
                (time.time(), error, file_id),
            ).fetchall()
        return int(rows[0][0]) if rows else 0

    # -- rebuilding -------------------------------------------------------------------

    def rebuild(
        self,
        outputs: Iterable[Mapping[str, Any]],
        server_streams: Iterable[Mapping[str, Any]],
        *,
        watch_of: Callable[[str], str] | None = None,
    ) -> RebuildReport:
        """Refill the journal from the outputs already written and the server's streams.

        ``outputs`` are the JSON documents next to the transcripts (each with
        ``source_path``, ``fingerprint``, ``stream_id``; ``"error": true`` for
        ``.error.json``): their versions become DONE (or FAILED, unless DONE),
        inserted if unknown (watch from the document's ``watch``, else
        ``watch_of(path)``). ``server_streams`` are stream records (``id``,
        ``status``, ``source``): rows with that stream id, or whose (path,
        fingerprint) derive that id, become INFLIGHT unless finished, so the
        daemon refreshes them instead of decoding again. Idempotent; one
        transaction.
        """
        now = time.time()
        with self.transaction() as db:
            return rebuild_rows(db, outputs, server_streams, watch_of=watch_of, now=now)
