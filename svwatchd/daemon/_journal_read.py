"""Reading the daemon's journal: its queries, for the daemon and for ``svwatchd status``.

One set of queries with one meaning each, whoever asks: the daemon's loop
(through `svwatchd.daemon._journal.Journal`, which adds the writes) and
``svwatchd status`` (through `JournalReader.open_readonly`, which needs no
lock and works while the daemon runs). Rows are read by named columns
(`COLUMNS`), so a reader of an older journal that the daemon has not
migrated yet still reads it.

Queries are indexed and bounded; nothing loads the whole table, so 100k rows
cost the daemon a few MB. Queries the loop runs every turn can be scoped to
the watches configured now (``watches=``): rows of a watch a reload removed
wait, whatever their state, and never take the room of the others.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

from svwatchd.daemon._journal_types import COLUMNS, SCHEMA_VERSION, FileRecord, FileState
from svwatchd.daemon._watchconfig import WatchId
from svwatchd.errors import SchemaVersionError

__all__ = ["CHUNK", "JournalReader", "marks"]

CHUNK = 900  # values per IN (...) and rows per batch transaction (SQLite allows 999 by default)


def marks(n: int) -> str:
    """``?,?,...`` for ``n`` values."""
    return ",".join("?" * n)


def _scope(watches: Collection[WatchId] | None) -> tuple[str, list[object]]:
    if watches is None:
        return "", []
    return f" AND watch IN ({marks(len(watches))})", list(watches)


class JournalReader:
    """The queries of one journal database; thread-safe (one connection behind an RLock)."""

    def __init__(self, path: Path, db: sqlite3.Connection | None = None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = db

    @classmethod
    def open_readonly(cls, state_dir: str | Path) -> JournalReader:
        """The journal of ``state_dir``, read-only and without its lock (for status).

        Raises `FileNotFoundError` when there is none yet, `SchemaVersionError`
        when a newer svwatchd wrote it.
        """
        path = Path(state_dir) / "journal.db"
        if not path.exists():
            raise FileNotFoundError(f"no journal at {path} yet (the daemon has not run)")
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except BaseException:
            db.close()
            raise
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            db.close()
            raise SchemaVersionError(
                "svwatchd", str(path), found, SCHEMA_VERSION, "use a newer svwatchd"
            )
        return cls(path, db)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"Journal {self.path} is closed")
        return self._db

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rows -------------------------------------------------------------------------

    def _select(self, where: str, args: Sequence[object] = ()) -> list[FileRecord]:
        with self._lock:
            rows = self._conn().execute(f"SELECT {COLUMNS} FROM files WHERE {where}", args)
            return [FileRecord.from_sql(r) for r in rows.fetchall()]

    def latest_many(self, paths: Iterable[str]) -> dict[str, FileRecord]:
        """Path -> its version detected last (if its stat still matches, no rehash is needed);
        in few queries, for a burst."""
        out: dict[str, FileRecord] = {}
        paths = list(paths)
        for i in range(0, len(paths), CHUNK):
            chunk = paths[i : i + CHUNK]
            where = (
                "id IN (SELECT MAX(id) FROM files "
                f"WHERE path IN ({marks(len(chunk))}) GROUP BY path)"
            )
            out.update((r.path, r) for r in self._select(where, chunk))
        return out

    def by_state(
        self,
        *states: FileState,
        limit: int | None = None,
        watches: Collection[WatchId] | None = None,
        exclude: Iterable[int] = (),
    ) -> list[FileRecord]:
        """Rows in any of ``states`` (of these ``watches`` if given, without the ``exclude``
        ids), in detection order; bounded by ``limit`` -- pass one: 100k rows would be 100k
        objects."""
        scope, scope_args = _scope(watches)
        where = f"state IN ({marks(len(states))}){scope}"
        args: list[object] = [*states, *scope_args]
        skip = list(exclude)
        if skip:
            where, args = where + f" AND id NOT IN ({marks(len(skip))})", [*args, *skip]
        where += " ORDER BY id"
        if limit is not None:
            where, args = where + " LIMIT ?", [*args, limit]
        return self._select(where, args)

    def oldest_pending(self) -> FileRecord | None:
        """The file waiting longest to be submitted (PENDING or HELD, by detection), or None."""
        rows = self._select("state IN ('PENDING', 'HELD') ORDER BY detected LIMIT 1")
        return rows[0] if rows else None

    def held(self, n: int) -> list[FileRecord]:
        """The ``n`` HELD rows updated last (their reason is in ``last_error``)."""
        return self._select("state='HELD' ORDER BY updated DESC LIMIT ?", (n,))

    def last_errors(self, n: int) -> list[FileRecord]:
        """The ``n`` rows updated last whose error stands now: FAILED, or being retried
        (SUBMITTING, INFLIGHT); held rows are `held`'s."""
        return self._select(
            "last_error IS NOT NULL AND state IN ('FAILED', 'SUBMITTING', 'INFLIGHT') "
            "ORDER BY updated DESC LIMIT ?",
            (n,),
        )

    def due_for_cleanup(self, finished_before: float, limit: int) -> list[FileRecord]:
        """Finished rows (DONE/FAILED) whose server stream is still there, oldest first."""
        return self._select(
            "cleaned IS NULL AND finished IS NOT NULL AND finished < ? AND stream_id IS NOT NULL "
            "AND state IN ('DONE', 'FAILED') ORDER BY finished LIMIT ?",
            (finished_before, limit),
        )

    def read(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        """The rows of one query (for the journal's side tables: deliveries, outputs)."""
        with self._lock:
            return self._conn().execute(sql, args).fetchall()

    def output_owners(self, paths: Iterable[str]) -> dict[str, str]:
        """Output path -> the source it was written for, for those of ``paths`` recorded."""
        out: dict[str, str] = {}
        paths = list(paths)
        for i in range(0, len(paths), CHUNK):
            chunk = paths[i : i + CHUNK]
            sql = f"SELECT path, source FROM outputs WHERE path IN ({marks(len(chunk))})"
            out.update((str(r[0]), str(r[1])) for r in self.read(sql, chunk))
        return out

    # -- counts -----------------------------------------------------------------------

    def counts_by_watch(self) -> dict[WatchId, dict[FileState, int]]:
        """Number of rows per watch and state (for metrics and status)."""
        out: dict[WatchId, dict[FileState, int]] = {}
        with self._lock:
            sql = "SELECT watch, state, COUNT(*) FROM files GROUP BY watch, state"
            for watch, state, n in self._conn().execute(sql):
                out.setdefault(WatchId(watch), {})[FileState(state)] = n
        return out

    def count(self, *states: FileState, watches: Collection[WatchId] | None = None) -> int:
        """Number of rows in any of ``states`` (of these ``watches`` if given); indexed: cheap
        enough for every turn."""
        scope, scope_args = _scope(watches)
        sql = f"SELECT COUNT(*) FROM files WHERE state IN ({marks(len(states))}){scope}"
        with self._lock:
            return int(self._conn().execute(sql, [*states, *scope_args]).fetchone()[0])

    def known_paths(self, watch: WatchId) -> set[str]:
        """Paths of ``watch`` with a row that is not REMOVED (a rescan ingests the others)."""
        with self._lock:
            sql = "SELECT path FROM files WHERE watch=? AND state!='REMOVED'"  # the set dedups
            return {r[0] for r in self._conn().execute(sql, (watch,))}

    def size(self) -> int:
        """Number of rows."""
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM files").fetchone()[0])
