"""svserver's data directory: the database's name, and the lock that keeps it to one svserver.

The store takes the lock for as long as it is open; the command line checks it
before the web server starts, so a second svserver on the same directory
prints one line (who holds it, what to do) instead of a start-up traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from svwatchd._sqlite import lock_exclusively

__all__ = ["DB_NAME", "check_unlocked", "lock"]

DB_NAME = "svserver.db"
"""svserver's database, in its data directory."""


def lock(db: Path) -> int:
    """Take svserver's lock beside its database ``db`` (see :func:`lock_exclusively`);
    it lasts until the returned descriptor is closed."""
    return lock_exclusively(
        db.with_suffix(".lock"), program="svserver", remedy="stop it or choose another --data-dir"
    )


def check_unlocked(db: str | Path) -> None:
    """Raise :class:`~svwatchd.errors.StateLockedError` when another svserver serves the
    database ``db``."""
    os.close(lock(Path(db)))
