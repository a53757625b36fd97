"""What the daemon's journal stores: its SQL schema, file states, and row types.

These are the journal's data, apart from the classes that read them
(`svwatchd.daemon._journal_read.JournalReader`) and write them
(`svwatchd.daemon._journal.Journal`), so that each module stays one concept
and a reader of the schema finds the states, their allowed transitions and
the row type (whose fields are the table's columns) side by side. Everything
public here is re-exported by `svwatchd.daemon._journal`, the import path
callers use.

`SCHEMA_VERSION` and `MIGRATIONS` change together: a new schema is a new
forward migration. `ALLOWED_FROM` is the state machine the ``mark_*``
methods of `Journal` enforce.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from enum import StrEnum

from svwatchd.daemon._identity import FileIdentity
from svwatchd.daemon._watchconfig import WatchId

__all__ = [
    "ALLOWED_FROM",
    "COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "FileRecord",
    "FileState",
    "RebuildReport",
]

SCHEMA_VERSION = 3

# Forward migrations: MIGRATIONS[v] takes a database from version v-1 to v.
MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    watch TEXT NOT NULL,
    path TEXT NOT NULL,              -- absolute
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,   -- 0 = unknown (rebuilt row)
    inode INTEGER NOT NULL, device INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,       -- sha256:<hex> of the whole content
    stream_id TEXT,                  -- set at SUBMITTING
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    metadata TEXT,                   -- JSON: resolved metadata sent at submission
    tags TEXT,                       -- JSON, never written (dropped by version 2)
    detected REAL NOT NULL, submitted REAL, finished REAL, updated REAL NOT NULL,
    cleaned REAL,                    -- when its server stream was deleted (delete_after)
    UNIQUE (path, fingerprint)       -- also the index on path
);
CREATE INDEX files_state ON files(state);
CREATE INDEX files_stream ON files(stream_id);
CREATE INDEX files_watch ON files(watch, state, path);
CREATE INDEX files_errors ON files(updated) WHERE last_error IS NOT NULL;
CREATE INDEX files_cleanup ON files(finished) WHERE cleaned IS NULL AND finished IS NOT NULL;
""",
    2: "ALTER TABLE files DROP COLUMN tags",
    3: """
CREATE TABLE deliveries (            -- notifications owed (svwatchd.daemon._deliveries)
    id TEXT NOT NULL,                -- stable: derived from the file version and the event
    channel TEXT NOT NULL,           -- webhook | exec
    watch TEXT NOT NULL,
    file_id INTEGER NOT NULL,
    event TEXT NOT NULL,             -- done | error
    payload TEXT NOT NULL,           -- the JSON sent, the same on every retry
    state TEXT NOT NULL,             -- PENDING | SENT | FAILED
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created REAL NOT NULL, next_at REAL NOT NULL, finished REAL,
    PRIMARY KEY (id, channel)
);
CREATE INDEX deliveries_due ON deliveries(next_at) WHERE state='PENDING';
CREATE TABLE outputs (               -- which source an output path was written for
    path TEXT PRIMARY KEY,
    file_id INTEGER NOT NULL,
    source TEXT NOT NULL
);
""",
}


class FileState(StrEnum):
    """Where a file version stands. `ALLOWED_FROM` lists the allowed transitions."""

    PENDING = "PENDING"  # seen; settling or waiting its turn
    HELD = "HELD"  # waiting for a valid metadata file, or held for its language (last_error)
    SUBMITTING = "SUBMITTING"  # stream id chosen, send in progress (committed before it)
    INFLIGHT = "INFLIGHT"  # the server acknowledged the stream
    DONE = "DONE"  # outputs durably written (committed after them)
    FAILED = "FAILED"  # bad input or retries exhausted (reason in last_error)
    SUPERSEDED = "SUPERSEDED"  # never submitted, and the path's content changed since
    REMOVED = "REMOVED"  # vanished before submission


_S = FileState
# Target state -> the states a row may move to it from. Rows in other states
# are left alone and the mark_* method reports it (False / fewer ids).
ALLOWED_FROM: dict[FileState, frozenset[FileState]] = {
    _S.PENDING: frozenset({_S.HELD}),  # release_held (revival is upsert_seen's)
    _S.HELD: frozenset({_S.PENDING, _S.HELD, _S.INFLIGHT}),  # INFLIGHT: on_foreign: hold
    _S.SUBMITTING: frozenset({_S.PENDING, _S.SUBMITTING, _S.INFLIGHT}),
    _S.INFLIGHT: frozenset({_S.SUBMITTING, _S.INFLIGHT}),
    _S.DONE: frozenset({_S.PENDING, _S.SUBMITTING, _S.INFLIGHT, _S.DONE}),
    _S.FAILED: frozenset({_S.PENDING, _S.HELD, _S.SUBMITTING, _S.INFLIGHT, _S.FAILED}),
    _S.REMOVED: frozenset({_S.PENDING, _S.HELD, _S.REMOVED}),
}


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One row of the journal: one version (path + fingerprint) of one file."""

    id: int
    watch: WatchId
    path: str
    size: int
    mtime_ns: int
    inode: int
    device: int
    fingerprint: str
    stream_id: str | None
    state: FileState
    attempts: int
    last_error: str | None
    metadata: dict[str, object] | None
    detected: float
    submitted: float | None
    finished: float | None
    updated: float
    cleaned: float | None

    @property
    def identity(self) -> FileIdentity:
        """The version as a `FileIdentity` (stat fields as last recorded)."""
        return FileIdentity(
            self.path, self.size, self.mtime_ns, self.inode, self.device, self.fingerprint
        )

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> FileRecord:
        """The record of a row selected as `COLUMNS`."""
        values = dict(row)
        values["state"] = FileState(values["state"])
        if values["metadata"] is not None:
            values["metadata"] = json.loads(values["metadata"])
        return cls(**values)


COLUMNS = ", ".join(f.name for f in fields(FileRecord))
"""The columns a `FileRecord` is read from, in order (``SELECT {COLUMNS} FROM files``):
named, not ``*``, so a reader never depends on columns it does not know."""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What `Journal.rebuild` changed: versions marked DONE, FAILED, INFLIGHT; rows inserted."""

    done: int = 0
    failed: int = 0
    inflight: int = 0
    inserted: int = 0
