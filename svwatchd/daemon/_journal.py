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

This module is the `Journal` class: opening, locking, migrating, and every
write. Its queries are `svwatchd.daemon._journal_read.JournalReader`'s (which
``svwatchd status`` opens read-only); what it stores (schema, states and
their transitions, row types) is in `svwatchd.daemon._journal_types` and the
recovery procedure behind `Journal.rebuild` in `svwatchd.daemon._rebuild`.
The public names of the types are re-exported here, the import path to use.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from svwatchd._sqlite import (
    connect,
    immediate,
    lock_exclusively,
    migrate,
    open_checked,
)
from svwatchd.daemon._identity import FileIdentity
from svwatchd.daemon._journal_read import JournalReader, marks
from svwatchd.daemon._journal_types import (
    ALLOWED_FROM,
    MIGRATIONS,
    SCHEMA_VERSION,
    FileRecord,
    FileState,
    RebuildReport,
)
from svwatchd.daemon._rebuild import rebuild_rows
from svwatchd.daemon._watchconfig import WatchId
from svwatchd.errors import JournalWriteError

__all__ = [
    "SCHEMA_VERSION",
    "Extra",
    "FileRecord",
    "FileState",
    "Journal",
    "RebuildReport",
]

_WRITE_CODES = (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)
_S = FileState
Extra = Callable[[sqlite3.Connection], None]
"""More writes for the transaction of a transition, made only if the row moved (the
notifications a finished file owes, the outputs it claims)."""


def _json(value: Mapping[str, object] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


class Journal(JournalReader):
    """The journal of one state directory, for the daemon: its queries and its writes.

    Used by the daemon's loop thread only (the RLock guards the connection all
    the same). Raises `StateLockedError` when another daemon holds the
    directory, `SchemaVersionError` for a newer schema. Check
    `rebuilt_from_corruption` after opening: when True the previous database
    (moved to `corrupt_path`) was damaged and this one is empty until
    `rebuild` and a rescan refill it.
    """

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.state_dir / "journal.db")
        self.lock_path = self.state_dir / "journal.lock"
        self.rebuilt_from_corruption = False
        self.corrupt_path: Path | None = None
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
            super().close()
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

    def _upsert(
        self, db: sqlite3.Connection, ident: FileIdentity, watch: WatchId, now: float
    ) -> bool:
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

    def upsert_seen_batch(self, items: Sequence[tuple[FileIdentity, WatchId]]) -> list[bool]:
        """Record that each identity is the current content of its path, in ONE transaction
        (one fsync for a burst); returns, for each, True when it became PENDING.

        A new (path, fingerprint) becomes a PENDING row. A known one keeps its
        state (a touched file is not a new version; only its stat fields are
        refreshed), except REMOVED or SUPERSEDED, which come back to PENDING
        (the content is there again). Older versions of the path that were
        never submitted (PENDING, HELD) become SUPERSEDED; submitted ones are
        kept, so both versions get outputs, in order.
        """
        now = time.time()
        with self.transaction() as db:
            return [self._upsert(db, ident, watch, now) for ident, watch in items]

    def assign_watches(self, watches: Iterable[WatchId]) -> int:
        """Give every row below one of these watch roots that watch (a row belongs to the
        watch that contains its file); returns how many rows moved. Rows recorded under
        another watch by an older svwatchd, or under a watch a reload replaced by one
        that now holds their folder, are put right; other rows are untouched."""
        moved = 0
        with self.transaction() as db:
            for watch in watches:
                prefix = watch.rstrip("/") + "/"
                moved += db.execute(
                    "UPDATE files SET watch=? WHERE watch!=? AND substr(path, 1, ?)=?",
                    (watch, watch, len(prefix), prefix),
                ).rowcount
        return moved

    # -- transitions ------------------------------------------------------------------

    def _move(
        self,
        to: FileState,
        rows: Iterable[tuple[int, Sequence[object]]],
        sets: str = "",
        extra: Extra | None = None,
    ) -> list[int]:
        """Move each (id, args for ``sets``) row that is in a state `ALLOWED_FROM` allows to
        ``to``, in one transaction; return the ids moved (others are left alone). ``extra``
        writes in the same transaction when a row moved."""
        allowed = sorted(ALLOWED_FROM[to])
        sql = (
            f"UPDATE files SET state=?, updated=?{sets} WHERE id=? "
            f"AND state IN ({marks(len(allowed))})"
        )
        moved: list[int] = []
        with self.transaction() as db:
            for file_id, args in rows:
                if db.execute(sql, (to, time.time(), *args, file_id, *allowed)).rowcount:
                    moved.append(file_id)
            if moved and extra is not None:
                extra(db)
        return moved

    def mark_submitting(
        self,
        ids: Sequence[int],
        stream_ids: Sequence[str],
        metadata: Sequence[Mapping[str, object] | None],
    ) -> list[int]:
        """Commit, BEFORE sending, that these rows go to the server under these stream ids
        with this resolved metadata. Returns the ids marked; send only those.
        Skipped: rows no longer PENDING/SUBMITTING/INFLIGHT (superseded, removed, done
        meanwhile) and rows that already carry another stream id (a row keeps its first
        id for ever, so a retry can never create a second stream)."""
        allowed = sorted(ALLOWED_FROM[_S.SUBMITTING])
        sql = (
            "UPDATE files SET state='SUBMITTING', stream_id=?, metadata=?, submitted=?, "
            f"updated=? WHERE id=? AND state IN ({marks(len(allowed))}) "
            "AND (stream_id IS NULL OR stream_id=?)"
        )
        moved: list[int] = []
        now = time.time()
        with self.transaction() as db:
            for i, sid, meta in zip(ids, stream_ids, metadata, strict=True):
                if db.execute(sql, (sid, _json(meta), now, now, i, *allowed, sid)).rowcount:
                    moved.append(i)
        return moved

    def mark_inflight(self, ids: Iterable[int]) -> int:
        """The server acknowledged these SUBMITTING rows; returns how many moved."""
        return len(self._move(_S.INFLIGHT, ((i, ()) for i in ids)))

    def mark_done(self, file_id: int, *, extra: Extra | None = None) -> bool:
        """Outputs are durably written (call only AFTER that): the version is DONE, and
        ``extra`` (the notifications it owes, the outputs it claims) in one transaction."""
        return bool(self._move(_S.DONE, [(file_id, (time.time(),))], ", finished=?", extra))

    def mark_failed(self, file_id: int, reason: str, *, extra: Extra | None = None) -> bool:
        """Bad input or retries exhausted: FAILED with ``reason``; never retried by itself.
        ``extra``: the notifications it owes, in the same transaction."""
        args = (time.time(), reason)
        sets = ", finished=?, last_error=?"
        return bool(self._move(_S.FAILED, [(file_id, args)], sets, extra))

    def mark_held(self, file_id: int, reason: str) -> bool:
        """Waiting for a valid metadata file, or held by svserver for its language
        (``reason`` says what is wrong); looked at again when the daemon starts."""
        return bool(self._move(_S.HELD, [(file_id, (reason,))], ", last_error=?"))

    def mark_removed(self, file_id: int) -> bool:
        """The file vanished before it was submitted."""
        return bool(self._move(_S.REMOVED, [(file_id, ())]))

    def release_held(
        self, ids: Iterable[int] | None = None, *, watch: WatchId | None = None
    ) -> int:
        """HELD rows back to PENDING: these ``ids``, else all of ``watch``, else all."""
        if ids is None:
            with self._lock:
                sql = "SELECT id FROM files WHERE state='HELD' AND (?1 IS NULL OR watch=?1)"
                ids = [r[0] for r in self._conn().execute(sql, (watch,))]
        return len(self._move(_S.PENDING, ((i, ()) for i in ids)))

    def mark_cleaned(self, ids: Iterable[int]) -> None:
        """Their server streams were deleted (``delete_after``)."""
        now = time.time()
        with self.transaction() as db:
            db.executemany("UPDATE files SET cleaned=? WHERE id=?", [(now, i) for i in ids])

    def record_error(self, file_id: int, error: str | None, *, retries: int) -> int:
        """A decode attempt of this INFLIGHT row ended in ERROR: count it (keeping
        ``error``) and, while the count is at most ``retries``, send the row back to
        SUBMITTING under its stream id -- the submitter resends it and the server re-queues
        the stream. One transaction: an attempt is never counted without its retry being
        queued. Returns the count (above ``retries``: no retry is left; fail the file)."""
        with self.transaction() as db:
            rows = db.execute(
                "UPDATE files SET attempts=attempts+1, updated=?, "
                "last_error=COALESCE(?, last_error), "
                "state=CASE WHEN attempts+1 <= ? THEN 'SUBMITTING' ELSE state END "
                "WHERE id=? AND state='INFLIGHT' RETURNING attempts",
                (time.time(), error, retries, file_id),
            ).fetchall()
        return int(rows[0][0]) if rows else 0

    @staticmethod
    def claim_outputs(paths: Iterable[str], file_id: int, source: str) -> Extra:
        """Record (in a transition's transaction) that ``paths`` were written for ``source``:
        another source whose output name is the same is refused, never written over."""
        rows = [(p, file_id, source) for p in paths]

        def claim(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT OR REPLACE INTO outputs (path, file_id, source) VALUES (?,?,?)", rows
            )

        return claim

    # -- rebuilding -------------------------------------------------------------------

    def rebuild(
        self,
        outputs: Iterable[Mapping[str, object]],
        server_streams: Iterable[Mapping[str, object]],
    ) -> RebuildReport:
        """Refill the journal from the outputs already written and the server's streams.

        ``outputs`` are the JSON documents next to the transcripts (each with
        ``source_path``, ``fingerprint``, ``stream_id``; ``"error": true`` for
        ``.error.json``): their versions become DONE (or FAILED, unless DONE),
        inserted if unknown (watch from the document's ``watch``; without one,
        `assign_watches` places the row). ``server_streams`` are stream records
        (``id``, ``status``, ``source``): rows with that stream id, or whose
        (path, fingerprint) derive that id, become INFLIGHT unless finished, so
        the daemon refreshes them instead of decoding again. Idempotent; one
        transaction.
        """
        now = time.time()
        with self.transaction() as db:
            return rebuild_rows(db, outputs, server_streams, now=now)
