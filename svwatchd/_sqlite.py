"""What svserver's store and the daemon's journal share about SQLite and their files.

Both keep state that must survive a crash (WAL, ``synchronous=FULL``: a
committed transaction survives a process crash and a power loss), both are
the only writer of their directory (an ``flock`` held for the process
lifetime, with the holder's PID in the lock file), and both carry a schema
version that migrates forward on open and refuses a newer one.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from svwatchd.errors import SchemaVersionError, StateLockedError

__all__ = [
    "connect",
    "immediate",
    "lock_exclusively",
    "migrate",
    "move_aside",
    "open_checked",
]

_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def lock_exclusively(path: Path, *, program: str, remedy: str) -> int:
    """Take an exclusive ``flock`` on ``path`` (created if missing) and write our PID in it.

    Returns the file descriptor: the lock lasts until it is closed (or the
    process ends). Raises :class:`StateLockedError` (naming ``program``, the
    holder's PID and the ``remedy``) when another process holds it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        pid = int(text) if text.isdigit() else None
        raise StateLockedError(program, str(path), pid, remedy) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def connect(path: Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit transactions), rows as ``sqlite3.Row``,
    WAL with ``synchronous=FULL``, usable from the threads that share its owner's lock."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE), committed on exit, rolled back on error.

    A COMMIT can fail too (disk full: SQLite writes the WAL at commit); it is
    rolled back unless SQLite already did, so the connection is never left
    inside a transaction and the next write starts clean.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def migrate(
    db: sqlite3.Connection,
    migrations: Mapping[int, str],
    current: int,
    *,
    path: Path,
    program: str,
    remedy: str,
) -> None:
    """Bring the schema of ``path`` up to ``current`` inside the caller's transaction.

    ``migrations[v]`` is the SQL script taking version v-1 to v. Raises
    :class:`SchemaVersionError` when the database is already past ``current``.
    """
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > current:
        raise SchemaVersionError(program, str(path), version, current, remedy)
    for target in range(version + 1, current + 1):
        for stmt in migrations[target].split(";"):
            if stmt.strip():
                db.execute(stmt)
    db.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)", (str(current),)
    )


def move_aside(path: Path, name: str) -> Path:
    """Move a damaged database (and its -wal/-shm) to ``<name>.corrupt-<UTC stamp>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            os.replace(side, Path(str(target) + suffix))
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return target


def open_checked(
    path: Path, opener: Callable[[], sqlite3.Connection], name: str
) -> tuple[sqlite3.Connection, Path | None]:
    """Open ``path`` with ``opener`` and run ``PRAGMA quick_check``.

    A damaged database is never silently emptied: it is moved aside
    (:func:`move_aside`) and a fresh one opened; the second item says where the
    damaged copy went (None when the database was sound).
    """
    db: sqlite3.Connection | None = None
    try:
        db = opener()
        problems = [r[0] for r in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("quick_check: " + "; ".join(problems[:5]))
        return db, None
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and (code & 0xFF) not in _CORRUPT_CODES:
            raise
        if db is not None:
            db.close()
        moved = move_aside(path, name)
        return opener(), moved
