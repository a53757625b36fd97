"""What the HTTP API asks of svserver: submit, upload, query, pause, resume, close, delete, listen.

The service decides what a request means for each stream and leaves the
writing to its collaborators: admission checks (:mod:`~svwatchd.server._submission`),
state changes (:mod:`~svwatchd.server._lifecycle`), records
(:mod:`~svwatchd.server._records`). It raises domain errors from
:mod:`svwatchd.errors` (an unknown stream, a deleted one); the API maps them
to HTTP answers in one table. All of it runs on the event loop thread, so it
never races with the scheduler.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from svwatchd.errors import (
    InvalidInputError,
    StreamDeletedError,
    StreamExistsError,
    StreamNotFoundError,
)
from svwatchd.model.enums import DecodeStatus
from svwatchd.model.speechdata import Utterance
from svwatchd.server._changes import Changes, wait
from svwatchd.server._lifecycle import RUNNING, Lifecycle
from svwatchd.server._records import Listeners, Records
from svwatchd.server._store import NewStream, Store, StreamRow
from svwatchd.server._submission import Admission, Refused, Rejection, StreamSpec
from svwatchd.server._uploads import Uploads

__all__ = [
    "LiveControl",
    "StreamService",
    "epoch_of",
]


class LiveControl(Protocol):
    """What the service needs of the live socket sessions."""

    def stop(self, stream_id: str) -> None:
        """Stop the stream's session, if one runs (it was closed or deleted)."""

    def discard(self, stream_id: str) -> None:
        """Remove what the stream's session spooled."""


class StreamService:
    """The streams as the API sees them."""

    def __init__(
        self,
        *,
        store: Store,
        lifecycle: Lifecycle,
        admission: Admission,
        records: Records,
        listeners: Listeners,
        uploads: Uploads,
        live: LiveControl,
        changes: Changes,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._admission = admission
        self._records = records
        self._listeners = listeners
        self._uploads = uploads
        self._live = live
        self._changes = changes

    # -- submission ---------------------------------------------------------------------

    def submit(self, specs: Sequence[StreamSpec]) -> tuple[list[str], list[Rejection]]:
        """Create (or find again) each stream; idempotent by id. Returns the accepted
        streams' records (JSON text) and the refusals.

        The same id with the same source returns the existing stream (a retried
        request never decodes twice); an id whose stream ended in ERROR is
        re-queued (a retry), with new tags if they changed; a deleted id, or an
        id reused for another source, is refused with 409.
        """
        existing = self._store.get(s.id for s in specs)
        new: list[NewStream] = []
        retry: list[str] = []
        retagged: dict[str, tuple[str, str]] = {}
        rejected: list[Rejection] = []
        seen: set[str] = set()
        now = time.time()
        for spec in specs:
            if spec.id in seen:
                rejected.append(Rejection(spec.id, 409, "duplicate_id", "id twice in one request"))
                continue
            seen.add(spec.id)
            old = existing.get(spec.id)
            if old is not None:
                problem = self._admission.resubmission(old, spec)
                if problem is not None:
                    rejected.append(problem)
                elif old.status is DecodeStatus.ERROR:
                    retry.append(old.id)
                    if old.spec != spec.canonical():  # retaggable: new tags, same source
                        retagged[old.id] = (json.dumps(spec.tags), spec.canonical())
                continue
            try:
                new.append(self._admission.admit(spec, now))
            except Refused as exc:
                rejected.append(exc.rejection)
        if new:
            self._lifecycle.create(new)
        if retry:
            self._lifecycle.retry(retry, retagged)
        refused = {r.id for r in rejected}
        return self._records.by_id([s.id for s in specs if s.id not in refused])[0], rejected

    async def upload(self, stream_id: str, chunks: AsyncIterable[bytes], limit: int) -> int:
        """Keep the bytes of a file to submit as ``stream_id`` next; returns their count.

        Refused once the stream exists (:class:`StreamExistsError`): its source is fixed.
        """
        if self._store.one(stream_id) is not None:
            raise StreamExistsError(
                f"stream {stream_id} already exists; its upload is fixed", stream_id=stream_id
            )
        return await self._uploads.receive(stream_id, chunks, limit)

    def upload_path(self, stream_id: str) -> Path:
        """Where the upload for ``stream_id`` is kept (to read it before submitting)."""
        return self._uploads.path(stream_id)

    def discard_upload(self, stream_id: str) -> None:
        """Remove an upload no stream was made of (its request was refused), or one whose
        stream has finished and whose audio is not kept (an OpenAI request's)."""
        self._uploads.discard(stream_id)

    # -- queries ------------------------------------------------------------------------

    def records(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Records (JSON text) of the given streams in order, and the unknown ids."""
        return self._records.by_id(ids)

    def query(self, matchers: Sequence[Mapping[str, object]]) -> list[str]:
        """Records (JSON text) of every stream not deleted matching any matcher (all if none)."""
        return self._records.matching(matchers)

    def utterances(self, stream_id: str) -> list[Utterance]:
        """The committed utterances, in time order, without those skipped by resume."""
        row = self._known(stream_id)
        if row.status is DecodeStatus.DELETED:
            raise StreamDeletedError(f"stream {stream_id} was deleted", stream_id=stream_id)
        return [u.utterance for _, u in self._store.utterances(stream_id) if not u.skipped]

    def _known(self, stream_id: str) -> StreamRow:
        row = self._store.one(stream_id)
        if row is None:
            raise StreamNotFoundError(f"no stream {stream_id}", stream_id=stream_id)
        return row

    def follow(self, stream_id: str, address: str) -> AsyncIterator[Utterance]:
        """Utterances as they are committed (earlier ones first) until the stream ends.

        :class:`StreamNotFoundError` at once for an unknown stream, before any is sent.
        """
        self._known(stream_id)
        return self._follow(stream_id, address)

    async def _follow(self, stream_id: str, address: str) -> AsyncIterator[Utterance]:
        listener = self._listeners.add(stream_id, address)
        last = -1
        try:
            while True:
                change = self._changes.next_change()
                for idx, u in self._store.utterances(stream_id, after=last):
                    last = idx
                    if not u.skipped:
                        listener.sent += 1
                        yield u.utterance
                row = self._store.one(stream_id)
                if row is None or row.status not in RUNNING:
                    if not self._store.utterances(stream_id, after=last):
                        return
                    continue  # committed as it finished: send those first
                await wait(change, 1.0)
        finally:
            self._listeners.remove(stream_id, listener)

    async def finished(
        self, stream_id: str, gone: Callable[[], Awaitable[bool]], poll: float = 0.5
    ) -> StreamRow | None:
        """Wait until the stream has finished (DONE, ERROR, CLOSED) and return it. A request
        that waits for its stream (the OpenAI-compatible route) passes ``gone``, asked at
        each change and every ``poll`` seconds: once it says the client left, the stream is
        deleted (nobody will read it) and None returned; None also if it was deleted."""
        while True:
            change = self._changes.next_change()
            row = self._known(stream_id)
            if row.status is DecodeStatus.DELETED:
                return None
            if row.status not in RUNNING:
                return row
            if await gone():
                self.delete([stream_id])
                return None
            await wait(change, poll)

    # -- transitions --------------------------------------------------------------------

    def pause(self, ids: Sequence[str]) -> dict[str, bool]:
        """Pause streams that are queued or active; True for each one now PAUSED."""
        before = self._store.get(ids)
        moved = set(self._lifecycle.pause(ids))
        return {
            sid: sid in moved or (sid in before and before[sid].status is DecodeStatus.PAUSED)
            for sid in ids
        }

    def resume(self, ids: Sequence[str], fromtime: float | None) -> dict[str, bool]:
        """Resume paused streams; ``fromtime`` (epoch s) skips utterances ending before it.

        A stream that is not paused is left as it is (True while it still runs, so
        a repeated resume is harmless), but ``fromtime`` still applies to it.
        """
        rows = self._store.get(ids)
        self._lifecycle.resume(list(rows.values()), fromtime)
        return {sid: sid in rows and rows[sid].status in RUNNING for sid in ids}

    def close(self, ids: Sequence[str]) -> dict[str, bool]:
        """Abort streams that are still running (CLOSED); what was decoded is kept.
        True for every stream that is known and not deleted."""
        rows = self._store.get(ids)
        for sid in self._lifecycle.close(ids):
            self._live.stop(sid)
        return {sid: sid in rows and rows[sid].status is not DecodeStatus.DELETED for sid in ids}

    def delete(self, ids: Sequence[str]) -> dict[str, bool]:
        """Close streams and remove every artifact (utterances, spool, upload); keep a
        tombstone. True for every stream that is known."""
        self.close(ids)
        rows = self._store.get(ids)
        self._lifecycle.tombstone(ids)
        for sid in rows:
            self._uploads.discard(sid)
            self._live.discard(sid)
        return {sid: sid in rows for sid in ids}


def epoch_of(fromtime: datetime | int | float | None) -> float | None:
    """``resume``'s ``fromtime``: None, -1 (now) or a datetime (naive = local time)."""
    if fromtime is None:
        return None
    if isinstance(fromtime, datetime):
        return (fromtime if fromtime.tzinfo else fromtime.astimezone()).timestamp()
    if fromtime == -1:
        return time.time()
    raise InvalidInputError(f"fromtime must be a datetime, -1 or None, not {fromtime!r}")
