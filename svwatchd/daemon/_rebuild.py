"""Rebuilding the journal's rows from what survived a lost journal: outputs and server streams.

When the journal database was damaged (moved aside on open) or lost, the
written outputs and the server's stream list still say which file versions
were finished and which were sent. `rebuild_rows` turns them back into rows,
inside one transaction the caller holds; `svwatchd.daemon._journal.Journal.rebuild`
is the public entry point and documents the rules. It lives apart from the
`Journal` class because it is one recovery procedure, not part of the
day-to-day journal operations.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

from svwatchd.daemon._identity import stream_id_for
from svwatchd.daemon._journal_types import RebuildReport

__all__ = ["rebuild_rows"]


def rebuild_rows(
    db: sqlite3.Connection,
    outputs: Iterable[Mapping[str, object]],
    server_streams: Iterable[Mapping[str, object]],
    *,
    now: float,
) -> RebuildReport:
    """Apply `Journal.rebuild`'s rules to ``db``, inside the caller's transaction.

    Rows inserted or changed get ``now`` as their detection, finish, submission
    and update times (whichever they lack). Returns what changed.
    """
    done = failed = inflight = inserted = 0
    for doc in outputs:
        path, fp = str(doc["source_path"]), str(doc["fingerprint"])
        watch = str(doc.get("watch") or "")  # "" until Journal.assign_watches places it
        inserted += db.execute(
            "INSERT OR IGNORE INTO files (watch, path, size, mtime_ns, inode, device, "
            "fingerprint, state, detected, updated) VALUES (?,?,?,0,0,0,?,'PENDING',?,?)",
            (watch, path, _size(doc.get("size")), fp, now, now),
        ).rowcount
        sets = "state=?, finished=COALESCE(finished, ?), updated=?, "
        sets += "stream_id=COALESCE(stream_id, ?)"
        args: list[object] = [now, now, doc.get("stream_id")]
        if doc.get("error"):  # a failure never overrides a success
            reason = doc.get("message") or doc.get("reason") or "see its .error.json"
            failed += db.execute(
                f"UPDATE files SET {sets}, last_error=? WHERE path=? AND fingerprint=? "
                "AND state NOT IN ('DONE','FAILED')",
                ("FAILED", *args, str(reason), path, fp),
            ).rowcount
        else:
            done += db.execute(
                f"UPDATE files SET {sets} WHERE path=? AND fingerprint=? AND state!='DONE'",
                ("DONE", *args, path, fp),
            ).rowcount
    for rec in server_streams:
        sid = str(rec["id"])
        source = rec.get("source")
        if isinstance(source, str):
            for row in db.execute(
                "SELECT id, path, fingerprint FROM files WHERE path=? AND stream_id IS NULL",
                (source,),
            ).fetchall():
                if stream_id_for(row["path"], row["fingerprint"]) == sid:
                    db.execute("UPDATE files SET stream_id=? WHERE id=?", (sid, row["id"]))
        inflight += db.execute(
            "UPDATE files SET state='INFLIGHT', updated=?, submitted=COALESCE(submitted,?)"
            " WHERE stream_id=? AND state IN ('PENDING','HELD','SUBMITTING','SUPERSEDED',"
            "'REMOVED')",
            (now, now, sid),
        ).rowcount
    return RebuildReport(done, failed, inflight, inserted)


def _size(value: object) -> int:
    """The ``size`` an output records (0, unknown, for anything but a whole number)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
