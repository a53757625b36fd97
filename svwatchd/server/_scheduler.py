"""The queue: which streams decode now, and committing what their file jobs yield.

The scheduler fills free decode slots (:mod:`~svwatchd.server._slots`): live
socket streams first (a live session decodes them, see
:mod:`~svwatchd.server._live`), then files. Short files are packed several to a
job (the engine may pack them into shared windows) and are all ACTIVE
together.

A file job's utterances are committed with the stream's final state in one
transaction, so a crash mid-decode leaves nothing to duplicate: the stream is
re-queued at the next start and decoded again from the beginning.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog

from svwatchd.errors import AudioDecodeError
from svwatchd.model.enums import DecodeStatus
from svwatchd.server._changes import Changes
from svwatchd.server._clips import Loaded, label, load
from svwatchd.server._engines.base import Heard
from svwatchd.server._executor import Executor
from svwatchd.server._hearing import hearing_of, hold
from svwatchd.server._lifecycle import Lifecycle, Progress
from svwatchd.server._longfile import LongFiles
from svwatchd.server._pieces import LONG_FILE_SECONDS
from svwatchd.server._slots import Slots, cancel_all
from svwatchd.server._store import Store, StreamRow

__all__ = [
    "SHORT_CLIP_SECONDS",
    "SWEEP_SECONDS",
    "DecodeObserver",
    "LiveStarter",
    "Scheduler",
]

log = structlog.get_logger("svserver.scheduler")

SHORT_CLIP_SECONDS = 20.0
SWEEP_SECONDS = 5.0  # how often ACTIVE streams without a job are queued again


class LiveStarter(Protocol):
    """Starts a live session for an ACTIVE socket stream (it takes a slot of its own)."""

    def start(self, row: StreamRow) -> None:
        """Connect to the stream's socket and decode what arrives."""


class DecodeObserver(Protocol):
    """Who is told about decoding as it happens (the metrics)."""

    def observe_queue_wait(self, seconds: float) -> None:
        """One stream left QUEUED after ``seconds``."""

    def observe_job(
        self,
        queue_wait: float | Iterable[float] | None,
        decode_seconds: float,
        audio_seconds: float,
    ) -> None:
        """One decode job finished."""


class Scheduler:
    """Moves QUEUED streams to ACTIVE on free slots and commits their file jobs' results."""

    def __init__(
        self,
        *,
        store: Store,
        lifecycle: Lifecycle,
        slots: Slots,
        executor: Executor,
        live: LiveStarter,
        long_files: LongFiles,
        changes: Changes,
        observer: DecodeObserver,
        pack_max: Callable[[], int],
        sample_rate: int = 16000,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._slots = slots
        self._executor = executor
        self._live = live
        self._long_files = long_files
        self._changes = changes
        self._observer = observer
        self._pack_max = pack_max
        self._sample_rate = sample_rate
        self._task: asyncio.Task[None] | None = None
        self.jobs_done = 0
        self.audio_seconds_decoded = 0.0

    def start(self) -> None:
        """Start dispatching on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        """Stop dispatching and abandon running jobs; their streams stay ACTIVE in the
        store and go back to QUEUED at the next start (nothing is marked ERROR)."""
        if self._task is not None:
            await cancel_all([self._task])
        await cancel_all(self._slots.jobs())

    async def _run(self) -> None:
        next_sweep = time.monotonic() + SWEEP_SECONDS
        store_problem: str | None = None
        while True:
            try:
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_SECONDS
                    self.requeue_orphans()
                self.dispatch()
                if store_problem is not None:
                    store_problem = None
                    log.info("scheduler.store_writable")
            except (sqlite3.OperationalError, OSError) as exc:
                if str(exc) != store_problem:  # once per problem, not twice a second
                    store_problem = str(exc)
                    log.error(
                        "scheduler.store_failed",
                        error=store_problem,
                        detail="streams wait in the queue until the store can be written",
                    )
            except Exception:  # keep the queue alive; the error is logged with its stream
                log.exception("scheduler.dispatch_failed")
            await self._changes.wait_for_work(0.5)

    def dispatch(self) -> None:
        """Start whatever the free slots allow: live sockets first, then file batches."""
        free = self._slots.free_for_live()
        if free > 0:
            for row, wait in self._lifecycle.activate(self._store.queued_sockets(limit=free)):
                self._observer.observe_queue_wait(wait)
                self._live.start(row)
        if self._slots.free_for_files() <= 0:
            return  # no free slot: the queue is not even read (a backlog costs nothing here)
        queued = self._store.with_status(DecodeStatus.QUEUED, limit=1000)
        files = [r for r in queued if r.kind != "socket"]
        while files and self._slots.free_for_files() > 0:
            batch = self._next_batch(files)
            files = files[len(batch) :]
            active = self._lifecycle.activate(batch)
            for _, wait in active:
                self._observer.observe_queue_wait(wait)
            if active:
                rows = [row for row, _ in active]
                long = len(rows) == 1 and _is_long(rows[0])
                job = self._long_job(rows[0]) if long else self._file_job(rows)
                task = asyncio.get_running_loop().create_task(job)
                self._slots.hold_job(task, [r.id for r in rows])

    def requeue_orphans(self) -> int:
        """File streams ACTIVE without a running job (their results could not be stored,
        e.g. the disk was full) go back to QUEUED; returns how many. Retried every few
        seconds, so they are decoded again once the store can be written."""
        orphans = [
            r
            for r in self._store.with_status(DecodeStatus.ACTIVE, limit=1000)
            if r.kind != "socket" and not self._slots.in_job(r.id)
        ]
        done = 0
        for row in orphans:
            try:
                self._lifecycle.requeue([row.id])
            except (sqlite3.OperationalError, OSError):
                break  # still cannot write: the next sweep tries again
            done += 1
            log.info("decode.requeued", stream_id=row.id, source=row.source)
        return done

    def _next_batch(self, files: list[StreamRow]) -> list[StreamRow]:
        """Short files are packed together (up to ``pack_max``); a long one goes alone."""

        def short(r: StreamRow) -> bool:
            return r.sourceseconds is not None and r.sourceseconds <= SHORT_CLIP_SECONDS

        if not short(files[0]):
            return files[:1]
        batch: list[StreamRow] = []
        for r in files:
            if len(batch) >= max(1, self._pack_max()):
                break
            if short(r):
                batch.append(r)
        return batch

    async def _long_job(self, row: StreamRow) -> None:
        began = time.monotonic()
        try:
            seconds = await self._long_files.decode(row)
        except AudioDecodeError as exc:
            self._fail(row, str(exc))
            return
        except (sqlite3.OperationalError, OSError) as exc:
            _commit_failed([row], exc)  # the pieces committed stay; the rest is decoded later
            return
        self.jobs_done += 1
        self.audio_seconds_decoded += seconds
        self._observer.observe_job(None, time.monotonic() - began, seconds)

    async def _file_job(self, rows: list[StreamRow]) -> None:
        try:
            await self._decode_files(rows)
        except (sqlite3.OperationalError, OSError) as exc:
            _commit_failed(rows, exc)

    async def _decode_files(self, rows: list[StreamRow]) -> None:
        loaded: list[tuple[StreamRow, Loaded]] = []
        for row in rows:
            try:
                loaded.append((row, await asyncio.to_thread(load, row, self._sample_rate)))
            except (AudioDecodeError, OSError) as exc:
                self._fail(row, _describe(row, exc))
        if not loaded:
            return
        clips = [c.samples for _, item in loaded for c in item.clips]
        asks = [row.ask for row, item in loaded for _ in item.clips]
        began = time.monotonic()
        results: list[Heard] = []
        if clips:
            try:
                results = await asyncio.wrap_future(self._executor.submit(clips, asks))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                for row, _ in loaded:
                    self._fail(row, f"decoding {row.source} failed: {exc}")
                return
        wall = time.monotonic() - began
        work = [sum(len(c.samples) for c in item.clips) for _, item in loaded]
        total = sum(work) or 1
        position = 0
        for (row, item), share in zip(loaded, work, strict=True):
            mine = results[position : position + len(item.clips)]
            position += len(item.clips)
            self._commit(row, item, mine, wall * share / total)
        seconds = sum(item.seconds for _, item in loaded)
        self.jobs_done += 1
        self.audio_seconds_decoded += seconds
        self._observer.observe_job(None, wall, seconds)  # waits: seen at activation

    def _commit(self, row: StreamRow, item: Loaded, heard: list[Heard], wall: float) -> None:
        hearing = hearing_of(heard, row)
        if hearing.held is not None:
            hold(self._lifecycle, row, hearing)
            return
        utts = label(item, heard)
        anchor = row.anchor
        pairs = [(u, None if anchor is None else anchor + u.end) for u in utts]
        progress = Progress(
            decoded_seconds=item.seconds,
            decode_wall=wall,
            sourceseconds=item.seconds,
            track=item.track.number if item.track is not None else None,
            track_language=item.track.language if item.track is not None else None,
            channels_decoded=item.channels_decoded,
            channels_repeated=item.channels_repeated,
            language=hearing.language,
            language_probability=hearing.probability,
            mismatch=hearing.mismatch,
        )
        if self._lifecycle.commit(row.id, pairs, progress, final=True):
            log.info("decode.done", stream_id=row.id, source=row.source, utterances=len(utts))

    def _fail(self, row: StreamRow, message: str) -> None:
        if self._lifecycle.fail(row.id, message):
            log.warning("decode.error", stream_id=row.id, source=row.source, error=message)


def _is_long(row: StreamRow) -> bool:
    return row.sourceseconds is not None and row.sourceseconds > LONG_FILE_SECONDS


def _commit_failed(rows: list[StreamRow], exc: BaseException) -> None:
    """Results (or an error) could not be stored: nothing more of the job is kept, its
    streams stay ACTIVE and ``requeue_orphans`` queues them again."""
    for row in rows:
        log.error(
            "decode.commit_failed",
            stream_id=row.id,
            source=row.source,
            error=str(exc),
            detail="not stored; decoded again once svserver's store can be written",
        )


def _describe(row: StreamRow, exc: BaseException) -> str:
    if isinstance(exc, AudioDecodeError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"Cannot read {row.source}: {exc.strerror or exc}"
    return f"{row.source}: {exc}"
