"""A stream's life on svserver: its states, the moves allowed between them, and the writes.

::

    QUEUED ---activate---> ACTIVE ---complete---> DONE
       ^ <-----requeue------ |  |
       |                     |  +-----fail-----> ERROR ---retry---> QUEUED
     pause                 pause
       v                     v
    PAUSED    resume: back to QUEUED or ACTIVE (where it was paused from), or to
              DONE if a decode already running completed meanwhile; fail: ERROR

    QUEUED, ACTIVE, PAUSED ---close---> CLOSED
    any state but DELETED ---tombstone---> DELETED

:data:`ALLOWED_FROM` is that machine: for each state, the states a stream may
move to it from. :class:`Lifecycle` is the only writer of a stream's status;
each of its operations is one transaction whose ``UPDATE`` carries the guard
(``WHERE status IN ...``, derived from the table), so a move the table does
not allow is refused in one place, atomically, and the operation reports
which streams moved. Refusals are ordinary: a stream closed while its file
was decoding refuses ``complete`` (the abort wins). Every committed change
wakes the scheduler and the listeners (:class:`~svwatchd.server._changes.Changes`).

A PAUSED stream remembers where it goes on resume (``resume_status``). When a
decode that was already running completes while the stream is paused, its
results are kept and the stream stays PAUSED until resumed, then is DONE.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from svwatchd.model.enums import DecodeStatus
from svwatchd.model.speechdata import Utterance
from svwatchd.server._changes import Changes
from svwatchd.server._store import NewStream, SqlValue, Store, StreamRow, insert_utterances, recount

__all__ = [
    "ALLOWED_FROM",
    "DECODING",
    "RUNNING",
    "Lifecycle",
    "Progress",
    "allowed",
]

_S = DecodeStatus

ALLOWED_FROM: Mapping[DecodeStatus, frozenset[DecodeStatus]] = {
    _S.QUEUED: frozenset({_S.ACTIVE, _S.PAUSED, _S.ERROR}),  # requeue; resume; retry
    _S.ACTIVE: frozenset({_S.QUEUED, _S.PAUSED}),  # activate; resume
    _S.PAUSED: frozenset({_S.QUEUED, _S.ACTIVE}),  # pause
    _S.DONE: frozenset({_S.ACTIVE, _S.PAUSED}),  # complete; resume after completing paused
    _S.ERROR: frozenset({_S.ACTIVE, _S.PAUSED}),  # fail
    _S.CLOSED: frozenset({_S.QUEUED, _S.ACTIVE, _S.PAUSED}),  # close
    _S.DELETED: frozenset(set(_S) - {_S.DELETED}),  # tombstone
}
"""For each state, the states a stream may move to it from. Nothing else moves."""

RUNNING: frozenset[DecodeStatus] = frozenset({_S.QUEUED, _S.ACTIVE, _S.PAUSED})
"""Not finished: close applies, listeners wait for more."""

DECODING: frozenset[DecodeStatus] = frozenset({_S.ACTIVE, _S.PAUSED})
"""A decode may be running: its results are still committed (a pause keeps them)."""


def allowed(source: DecodeStatus, target: DecodeStatus) -> bool:
    """True if the table lets a stream move from ``source`` to ``target``."""
    return source in ALLOWED_FROM[target]


@dataclass(frozen=True, slots=True)
class Progress:
    """Decoding figures committed with a stream's results; None leaves a figure as it is."""

    decoded_seconds: float | None = None  # audio decoded so far, in all
    decode_wall: float = 0.0  # wall seconds this commit's decoding took (added up)
    sourceseconds: float | None = None
    decoded_bytes: int | None = None  # socket: spool bytes whose audio is committed
    received_bytes: int | None = None  # socket: spool bytes received
    track: int | None = None  # a container: the audio track decoded
    track_language: str | None = None  # ... and its language tag
    channels_decoded: int | None = None  # split_channels: channels decoded apart
    channels_repeated: int | None = None  # split_channels: channels that repeated another
    language: str | None = None  # the language heard (the first commit that says wins)
    language_probability: float | None = None  # ... and its detection's probability
    mismatch: tuple[str, float] | None = None  # the check heard this language (the first wins)

    def heard(self) -> dict[str, SqlValue]:
        """The values :data:`_HEARD_SQL` sets."""
        return {
            "hlang": self.language,
            "hprob": self.language_probability,
            "mlang": self.mismatch[0] if self.mismatch else None,
            "mprob": self.mismatch[1] if self.mismatch else None,
        }


_HEARD_SQL = (
    "language_probability = CASE WHEN heard_language IS NULL THEN :hprob "
    "ELSE language_probability END, "
    "heard_language = COALESCE(heard_language, :hlang), "
    "mismatch_probability = CASE WHEN language_mismatch IS NULL THEN :mprob "
    "ELSE mismatch_probability END, "
    "language_mismatch = COALESCE(language_mismatch, :mlang)"
)
"""What a commit (or a hold) records of the language heard: the first that says wins."""


class Lifecycle:
    """Every change of a stream's status, guarded by :data:`ALLOWED_FROM`, committed at once.

    Operations take stream ids (or rows) and return the ids that moved.
    """

    def __init__(self, store: Store, changes: Changes) -> None:
        self._store = store
        self._changes = changes

    # -- the guard --------------------------------------------------------------------

    @staticmethod
    def _move(
        db: sqlite3.Connection,
        ids: Collection[str],
        target: DecodeStatus,
        *,
        only_from: Collection[DecodeStatus] | None = None,
        sets: str = "",
        args: Mapping[str, SqlValue] | None = None,
    ) -> list[str]:
        """Move the streams that are in an allowed state to ``target`` (setting ``sets``
        too); returns the ids that moved. ``only_from`` narrows the table, never widens it."""
        sources = ALLOWED_FROM[target] if only_from is None else frozenset(only_from)
        if not sources <= ALLOWED_FROM[target]:
            wrong = ", ".join(sorted(s.value for s in sources - ALLOWED_FROM[target]))
            raise ValueError(f"the lifecycle has no move from {wrong} to {target.value}")
        marks = ", ".join(f"'{s.value}'" for s in sorted(sources))
        sql = (
            f"UPDATE streams SET status = :_target{', ' + sets if sets else ''} "
            f"WHERE id = :_id AND status IN ({marks})"
        )
        moved = []
        for sid in ids:
            values = {**(args or {}), "_target": target.value, "_id": sid}
            if db.execute(sql, values).rowcount:
                moved.append(sid)
        return moved

    def _done(self, moved: list[str]) -> list[str]:
        if moved:
            self._changes.changed()
        return moved

    # -- submission -------------------------------------------------------------------

    def create(self, streams: Sequence[NewStream]) -> None:
        """New streams, QUEUED."""
        self._store.insert_streams(streams)
        self._done([s.id for s in streams])

    def retry(
        self, ids: Collection[str], retagged: Mapping[str, tuple[str, str]] | None = None
    ) -> list[str]:
        """ERROR -> QUEUED: one more attempt of the same stream, from a clean slate;
        ``retagged`` gives some of them new tags: id -> (tags as JSON, canonical spec)."""
        with self._store.transaction() as db:
            for sid, (tags, spec) in (retagged or {}).items():
                db.execute(
                    "UPDATE streams SET tags = ?, spec = ? WHERE id = ? AND status = 'ERROR'",
                    (tags, spec, sid),
                )
            moved = self._move(
                db,
                ids,
                _S.QUEUED,
                only_from={_S.ERROR},
                sets="error = NULL, queued = :now, started = NULL, ended = NULL, "
                "attempts = attempts + 1, utterance_count = 0, word_count = 0, "
                "decoded_seconds = 0, decode_wall = 0, decoded_bytes = 0, track = NULL, "
                "track_language = NULL, channels_decoded = NULL, channels_repeated = NULL, "
                "heard_language = NULL, language_probability = NULL, "
                "language_mismatch = NULL, mismatch_probability = NULL",
                args={"now": time.time()},
            )
            for sid in moved:
                db.execute("DELETE FROM utterances WHERE stream_id = ?", (sid,))
        return self._done(moved)

    # -- the scheduler's --------------------------------------------------------------

    def activate(self, rows: Sequence[StreamRow]) -> list[tuple[StreamRow, float]]:
        """QUEUED -> ACTIVE; returns each row that moved with its wait in the queue."""
        now = time.time()
        moved: list[tuple[StreamRow, float]] = []
        with self._store.transaction() as db:
            for row in rows:
                wait = now - row.queued
                if self._move(
                    db,
                    [row.id],
                    _S.ACTIVE,
                    only_from={_S.QUEUED},
                    sets="started = :now, queue_wait = :wait",
                    args={"now": now, "wait": wait},
                ):
                    moved.append((row, wait))
        self._done([r.id for r, _ in moved])
        return moved

    def requeue(self, ids: Collection[str]) -> list[str]:
        """ACTIVE -> QUEUED: decoding was interrupted (a stop, a crash, a failed commit)."""
        with self._store.transaction() as db:
            moved = self._move(db, ids, _S.QUEUED, only_from={_S.ACTIVE})
        return self._done(moved)

    def requeue_interrupted(self) -> list[str]:
        """At start: every stream left ACTIVE by a stop or a crash goes back to QUEUED (and a
        paused one that would resume to ACTIVE resumes to QUEUED). Returns their ids.

        A file stream's utterances are committed with its final state, so an
        interrupted one has none to duplicate; a socket stream's are committed
        with the spool offset they cover, so it reconnects and goes on from there.
        """
        with self._store.transaction() as db:
            active = [r[0] for r in db.execute("SELECT id FROM streams WHERE status='ACTIVE'")]
            moved = self._move(db, active, _S.QUEUED, only_from={_S.ACTIVE})
            db.execute(
                "UPDATE streams SET resume_status='QUEUED' "
                "WHERE status='PAUSED' AND resume_status='ACTIVE'"
            )
        self._done(moved)
        return moved

    def commit(
        self,
        stream_id: str,
        utterances: Sequence[tuple[Utterance, float | None]],
        progress: Progress,
        *,
        final: bool,
    ) -> bool:
        """Store results while the stream is decoding (ACTIVE or PAUSED), atomically.

        ``utterances`` come with their wall-clock end (None if unknown); those
        ending before the stream's ``resume(fromtime)`` are kept as skipped.
        ``final``: decoding is complete, so the stream is DONE (if PAUSED, once
        resumed). False, and nothing stored, when the stream stopped decoding
        meanwhile (closed, deleted): the abort wins.
        """
        with self._store.transaction() as db:
            row = db.execute(
                "SELECT status, skip_before FROM streams WHERE id = ?", (stream_id,)
            ).fetchone()
            if row is None or DecodeStatus(row["status"]) not in DECODING:
                return False
            insert_utterances(db, stream_id, utterances, skip_before=row["skip_before"])
            db.execute(
                "UPDATE streams SET decoded_seconds = COALESCE(:decoded, decoded_seconds), "
                "decode_wall = decode_wall + :wall, "
                "sourceseconds = COALESCE(:seconds, sourceseconds), "
                "decoded_bytes = COALESCE(:dbytes, decoded_bytes), "
                "received_bytes = COALESCE(:rbytes, received_bytes), "
                "track = COALESCE(:track, track), "
                "track_language = COALESCE(:tlang, track_language), "
                "channels_decoded = COALESCE(:split, channels_decoded), "
                "channels_repeated = COALESCE(:repeated, channels_repeated), "
                f"{_HEARD_SQL} WHERE id = :id",
                {
                    "decoded": progress.decoded_seconds,
                    "wall": progress.decode_wall,
                    "seconds": progress.sourceseconds,
                    "dbytes": progress.decoded_bytes,
                    "rbytes": progress.received_bytes,
                    "track": progress.track,
                    "tlang": progress.track_language,
                    "split": progress.channels_decoded,
                    "repeated": progress.channels_repeated,
                    **progress.heard(),
                    "id": stream_id,
                },
            )
            if final and not self._move(
                db,
                [stream_id],
                _S.DONE,
                only_from={_S.ACTIVE},
                sets="ended = :now",
                args={"now": time.time()},
            ):
                self._defer(db, stream_id, _S.DONE)
        self._changes.changed()
        return True

    @staticmethod
    def _defer(db: sqlite3.Connection, stream_id: str, target: DecodeStatus) -> None:
        """A PAUSED stream goes to ``target`` when resumed (the table must allow it)."""
        if not allowed(_S.PAUSED, target):
            raise ValueError(f"the lifecycle has no move from PAUSED to {target.value}")
        db.execute(
            "UPDATE streams SET resume_status = ? WHERE id = ? AND status = 'PAUSED'",
            (target.value, stream_id),
        )

    def fail(self, stream_id: str, message: str, heard: Progress | None = None) -> bool:
        """ACTIVE or PAUSED -> ERROR, with the message that says why (and, for a stream held
        for its language, what was heard: ``heard``'s language fields)."""
        with self._store.transaction() as db:
            moved = self._move(
                db,
                [stream_id],
                _S.ERROR,
                sets=f"error = :error, ended = :now, resume_status = NULL, {_HEARD_SQL}",
                args={"error": message, "now": time.time(), **(heard or Progress()).heard()},
            )
        return bool(self._done(moved))

    # -- the client's -----------------------------------------------------------------

    def pause(self, ids: Collection[str]) -> list[str]:
        """QUEUED or ACTIVE -> PAUSED, remembering which to go back to."""
        with self._store.transaction() as db:
            moved = self._move(db, ids, _S.PAUSED, sets="resume_status = status")
        return self._done(moved)

    def resume(self, rows: Sequence[StreamRow], fromtime: float | None) -> list[str]:
        """PAUSED -> where it was paused from (or DONE); returns the ids that moved.

        ``fromtime`` (epoch s), if given, applies to every running stream of
        ``rows``, paused or not: utterances that end before it are skipped, now
        and as they are committed.
        """
        now = time.time()
        moved: list[str] = []
        with self._store.transaction() as db:
            for row in rows:
                if row.status not in RUNNING:
                    continue
                if fromtime is not None:
                    db.execute(
                        "UPDATE streams SET skip_before = ? WHERE id = ?", (fromtime, row.id)
                    )
                    db.execute(
                        "UPDATE utterances SET skipped = 1 WHERE stream_id = ? AND wall_end < ?",
                        (row.id, fromtime),
                    )
                    recount(db, row.id)
                target = row.resume_status or _S.QUEUED
                ended = "ended = :now, " if target is _S.DONE else ""
                moved += self._move(
                    db,
                    [row.id],
                    target,
                    only_from={_S.PAUSED},
                    sets=f"{ended}resume_status = NULL",
                    args={"now": now},
                )
        if moved or fromtime is not None:
            self._changes.changed()
        return moved

    def close(self, ids: Collection[str]) -> list[str]:
        """QUEUED, ACTIVE or PAUSED -> CLOSED; what was decoded is kept."""
        with self._store.transaction() as db:
            moved = self._move(
                db,
                ids,
                _S.CLOSED,
                sets="ended = :now, resume_status = NULL",
                args={"now": time.time()},
            )
        return self._done(moved)

    def tombstone(self, ids: Collection[str]) -> list[str]:
        """Anything -> DELETED: the utterances, path, tags and error go; the id stays."""
        with self._store.transaction() as db:
            moved = self._move(
                db,
                ids,
                _S.DELETED,
                sets="path = NULL, tags = '{}', error = NULL, resume_status = NULL, "
                "ended = COALESCE(ended, :now)",
                args={"now": time.time()},
            )
            for sid in moved:
                db.execute("DELETE FROM utterances WHERE stream_id = ?", (sid,))
        return self._done(moved)
