"""Completion notifications as journal rows: what is owed to whom, until it is delivered.

A file version that ends DONE or FAILED owes one delivery per configured
channel (``webhook``, ``exec``) that wants the event. The deliveries are
inserted in the SAME transaction that records the file's state (see
`notices`, passed to `Journal.mark_done` / `Journal.mark_failed`), so a crash
after the outputs and before the delivery finds the delivery still PENDING at
the next start; a delivery is marked SENT only after the receiver answered
2xx (or the command exited 0). Its id is derived from the version and the
event (`delivery_id`): the same on every retry, after a restart, after a
journal rebuild, so a receiver that got a delivery whose answer was lost can
recognise it. `(id, channel)` is the key: one delivery per version, event
and channel, whatever happens.

`DeliveryLog` is the loop's view of the table (due, sent, retry later,
failed, pending count); the sending is `svwatchd.daemon._delivery`'s and the
scheduling `svwatchd.daemon._notifier`'s.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from svwatchd.daemon._journal import FileRecord, Journal
from svwatchd.daemon._journal_read import marks
from svwatchd.daemon._notifyconfig import NotifyConfig

__all__ = [
    "DELIVERY_STATES",
    "Delivery",
    "DeliveryLog",
    "delivery_id",
    "notice",
    "notices",
]

DELIVERY_STATES = ("PENDING", "SENT", "FAILED")


def delivery_id(path: str, fingerprint: str, event: str) -> str:
    """The stable id of the ``event`` delivery of one file version: ``"d-"`` + 40 hex."""
    digest = hashlib.sha256(f"{path}\0{fingerprint}\0{event}".encode("utf-8", "surrogateescape"))
    return "d-" + digest.hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One owed delivery, as the journal holds it (``payload``: the JSON text sent)."""

    id: str
    channel: str
    watch: str
    file_id: int
    event: str
    payload: str
    attempts: int
    created: float
    next_at: float

    @property
    def document(self) -> dict[str, object]:
        """The payload as data."""
        doc: dict[str, object] = json.loads(self.payload)
        return doc


def notice(
    row: FileRecord,
    event: str,
    *,
    outputs: Sequence[str],
    duration: float | None = None,
    language: str | None = None,
    error: str | None = None,
    skipped: bool = False,
) -> dict[str, object]:
    """The JSON document of a notification (the same on every retry)."""
    return {
        "event": event,
        "delivery": delivery_id(row.path, row.fingerprint, event),
        "path": row.path,
        "watch": row.watch,
        "fingerprint": row.fingerprint,
        "stream_id": row.stream_id,
        "status": "DONE" if event == "done" else "FAILED",
        "outputs": list(outputs),
        "duration": duration,
        "language": language,
        "error": error,
        "skipped": skipped,
    }


def notices(
    config: NotifyConfig | None, row: FileRecord, document: dict[str, object], *, now: float
) -> Callable[[sqlite3.Connection], None]:
    """What to insert, in the journal's transaction, for ``document``'s event: one PENDING
    delivery per channel that wants it (none without a config). Already owed: kept."""
    event = str(document["event"])
    channels = config.channels(event) if config is not None else []
    payload = json.dumps(document, sort_keys=True, ensure_ascii=False)
    did = delivery_id(row.path, row.fingerprint, event)

    def insert(db: sqlite3.Connection) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO deliveries (id, channel, watch, file_id, event, payload, "
            "state, created, next_at) VALUES (?,?,?,?,?,?,'PENDING',?,?)",
            [(did, ch, row.watch, row.id, event, payload, now, now) for ch in channels],
        )

    return insert


_COLUMNS = "id, channel, watch, file_id, event, payload, attempts, created, next_at"


class DeliveryLog:
    """The journal's ``deliveries`` table, for the loop (the journal's owner)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def resume(self, now: float) -> int:
        """At a start: every PENDING delivery is due now (returns how many are pending)."""
        with self.journal.transaction() as db:
            return db.execute(
                "UPDATE deliveries SET next_at=? WHERE state='PENDING'", (now,)
            ).rowcount

    def due(
        self,
        now: float,
        limit: int,
        *,
        watches: Collection[str],
        exclude: Collection[tuple[str, str]] = (),
    ) -> list[Delivery]:
        """PENDING deliveries of these ``watches`` due by ``now``, earliest first, without
        those out already (``exclude``: (id, channel))."""
        rows = self.journal.read(
            f"SELECT {_COLUMNS} FROM deliveries WHERE state='PENDING' AND next_at<=? "
            f"AND watch IN ({marks(len(watches))}) ORDER BY next_at LIMIT ?",
            (now, *watches, limit + len(exclude)),
        )
        found = [Delivery(**dict(r)) for r in rows]
        return [d for d in found if (d.id, d.channel) not in exclude][:limit]

    def sent(self, delivery: Delivery, now: float) -> bool:
        """The receiver took it: SENT (False when it was no longer PENDING)."""
        return self._finish(delivery, "SENT", None, now)

    def failed(self, delivery: Delivery, error: str, now: float) -> bool:
        """Given up (its retry time is over, or its channel is gone): FAILED with ``error``."""
        return self._finish(delivery, "FAILED", error, now)

    def _finish(self, delivery: Delivery, state: str, error: str | None, now: float) -> bool:
        with self.journal.transaction() as db:
            return bool(
                db.execute(
                    "UPDATE deliveries SET state=?, attempts=attempts+1, "
                    "last_error=COALESCE(?, last_error), finished=? "
                    "WHERE id=? AND channel=? AND state='PENDING'",
                    (state, error, now, delivery.id, delivery.channel),
                ).rowcount
            )

    def retry_later(self, delivery: Delivery, error: str, next_at: float) -> int:
        """An attempt failed: count it and try again at ``next_at``; returns the attempts."""
        with self.journal.transaction() as db:
            rows = db.execute(
                "UPDATE deliveries SET attempts=attempts+1, last_error=?, next_at=? "
                "WHERE id=? AND channel=? AND state='PENDING' RETURNING attempts",
                (error, next_at, delivery.id, delivery.channel),
            ).fetchall()
        return int(rows[0][0]) if rows else 0

    def pending(self) -> int:
        """How many deliveries are owed (the partial index's count: cheap every refresh)."""
        return int(self.journal.read("SELECT COUNT(*) FROM deliveries WHERE state='PENDING'")[0][0])

    def counts(self) -> dict[str, int]:
        """Deliveries by state (PENDING, SENT, FAILED)."""
        rows = self.journal.read("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
        found = {str(r[0]): int(r[1]) for r in rows}
        return {state: found.get(state, 0) for state in DELIVERY_STATES}
