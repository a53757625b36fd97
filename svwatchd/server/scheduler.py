"""The queue: which streams decode now, on how many slots, and committing what they yield.

``maxactive`` counts decode slots (one job on one worker), not streams: short
files are packed several to a job (the engine may pack them into shared
windows) and are all ACTIVE together. While a live socket stream is
connected, one slot is kept free for it, so a backlog of files never starves
live audio.

A file job's utterances are committed with the stream's final state in one
transaction, so a crash mid-decode leaves nothing to duplicate: the stream is
re-queued at the next start and decoded again from the beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

import structlog

from svwatchd.audio import Samples, read_audio
from svwatchd.errors import AudioDecodeError
from svwatchd.model.format import AudioFormat
from svwatchd.model.speechdata import Utterance
from svwatchd.server.service import StreamService
from svwatchd.server.store import StreamRow

__all__ = [
    "SHORT_CLIP_SECONDS",
    "SWEEP_SECONDS",
    "Executor",
    "Scheduler",
]

log = structlog.get_logger("svserver.scheduler")

SHORT_CLIP_SECONDS = 20.0
SWEEP_SECONDS = 5.0  # how often ACTIVE streams without a job are queued again


class Executor(Protocol):
    """The worker pool seam: submit clips, get each clip's utterances back."""

    def submit(
        self, clips: list[Samples], languages: list[str | None] | None = None
    ) -> Future[list[list[Utterance]]]:
        """Decode the clips; the future's result has one list of utterances per clip."""

    def info(self) -> dict[str, Any]:
        """Engine, model and worker facts for sysinfo."""


class Scheduler:
    """Moves QUEUED streams to ACTIVE on free slots and commits their results."""

    def __init__(
        self,
        service: StreamService,
        executor: Executor,
        *,
        maxactive: Callable[[], int],
        pack_max: Callable[[], int],
        sample_rate: int = 16000,
    ) -> None:
        self.service = service
        self.store = service.store
        self.executor = executor
        self._maxactive = maxactive
        self._pack_max = pack_max
        self.sample_rate = sample_rate
        self._file_jobs: set[asyncio.Task[None]] = set()
        self._in_jobs: set[str] = set()  # ids of the streams in running file jobs
        self.live: dict[str, Any] = {}  # stream id -> live session (see live.py)
        self.start_live: Callable[[StreamRow], Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.metrics: Any = None  # ServerMetrics, when the app sets one
        self.jobs_done = 0
        self.audio_seconds_decoded = 0.0

    @property
    def busy(self) -> int:
        """Slots in use by file jobs."""
        return len(self._file_jobs)

    def start(self) -> None:
        """Start dispatching on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        """Stop dispatching and abandon running jobs; their streams stay ACTIVE in the
        store and go back to QUEUED at the next start (nothing is marked ERROR)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in list(self._file_jobs):
            job.cancel()
        for job in list(self._file_jobs):
            with contextlib.suppress(asyncio.CancelledError):
                await job

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
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that
            # arrives as the event is set (a live session ending at shutdown), and the
            # loop never stopped
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.service.wake.wait()
            self.service.wake.clear()

    def dispatch(self) -> None:
        """Start whatever the free slots allow: live sockets first, then file batches."""
        maxactive = max(1, self._maxactive())
        if self.start_live is not None and len(self.live) < maxactive:
            for row in self.store.queued_sockets(limit=maxactive - len(self.live)):
                self._activate([row])
                self.live[row.id] = self.start_live(row)
        file_cap = maxactive - 1 if self.live else maxactive
        if len(self._file_jobs) >= file_cap:
            return  # no free slot: the queue is not even read (a backlog costs nothing here)
        files = [r for r in self.store.with_status("QUEUED", limit=1000) if r.kind != "socket"]
        while files and len(self._file_jobs) < file_cap:
            batch = self._next_batch(files)
            files = files[len(batch) :]
            self._activate(batch)
            task = asyncio.get_running_loop().create_task(self._file_job(batch))
            self._file_jobs.add(task)
            self._in_jobs |= {r.id for r in batch}
            task.add_done_callback(self._file_jobs.discard)
            task.add_done_callback(functools.partial(self._job_ended, [r.id for r in batch]))

    def _job_ended(self, ids: list[str], _: asyncio.Task[None]) -> None:
        self._in_jobs.difference_update(ids)

    def requeue_orphans(self) -> int:
        """File streams ACTIVE without a running job (their results could not be stored,
        e.g. the disk was full) go back to QUEUED; returns how many. Retried every few
        seconds, so they are decoded again once the store can be written."""
        orphans = [
            r
            for r in self.store.with_status("ACTIVE", limit=1000)
            if r.kind != "socket" and r.id not in self._in_jobs
        ]
        done = 0
        for row in orphans:
            try:
                self.store.update(row.id, status="QUEUED")
            except (sqlite3.OperationalError, OSError):
                break  # still cannot write: the next sweep tries again
            done += 1
            log.info("decode.requeued", stream_id=row.id, source=row.source)
        if done:
            self.service.wake.set()
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

    def _activate(self, rows: list[StreamRow]) -> None:
        now = time.time()
        for row in rows:
            self.store.update(row.id, status="ACTIVE", started=now, queue_wait=now - row.queued)
            if self.metrics is not None:
                self.metrics.observe_queue_wait(now - row.queued)
        self.service.poke()

    async def _file_job(self, rows: list[StreamRow]) -> None:
        try:
            await self._decode_files(rows)
        except (sqlite3.OperationalError, OSError) as exc:
            # the results (or the error) could not be stored: nothing of this job is kept,
            # its streams stay ACTIVE and requeue_orphans queues them again
            for row in rows:
                log.error(
                    "decode.commit_failed",
                    stream_id=row.id,
                    source=row.source,
                    error=str(exc),
                    detail="not stored; decoded again once svserver's store can be written",
                )

    async def _decode_files(self, rows: list[StreamRow]) -> None:
        clips: list[Samples] = []
        decodable: list[StreamRow] = []
        for row in rows:
            try:
                clips.append(await asyncio.to_thread(self._load, row))
                decodable.append(row)
            except (AudioDecodeError, OSError) as exc:
                self._fail(row, _describe(row, exc))
        if not decodable:
            return
        began = time.monotonic()
        try:
            languages = [_language(r) for r in decodable]
            results: list[list[Utterance]] = await asyncio.wrap_future(
                self.executor.submit(clips, languages)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for row in decodable:
                self._fail(row, f"decoding {row.source} failed: {exc}")
            return
        wall = time.monotonic() - began
        seconds = [len(c) / self.sample_rate for c in clips]
        total = sum(seconds) or 1.0
        for row, utts, secs in zip(decodable, results, seconds, strict=True):
            self._commit(row, utts, secs, wall * secs / total)
        self.jobs_done += 1
        self.service.wake.set()  # a slot is free: dispatch now, not at the next tick
        self.audio_seconds_decoded += sum(seconds)
        if self.metrics is not None:
            self.metrics.observe_job(None, wall, sum(seconds))  # waits: seen at activation
        await self.service.notify()

    def _load(self, row: StreamRow) -> Samples:
        assert row.path is not None
        fmt = AudioFormat(
            filetype=row.filetype or "RAW",
            encoding=row.encoding,  # type: ignore[arg-type]
            sampwidth=row.sampwidth,
            samprate=row.samprate,
            channels=row.channels,
            endian=row.endian,  # type: ignore[arg-type]
        )
        if row.filetype == "WAV":
            # The server reads the header itself: the file is the authority.
            from svwatchd.audio import probe_wav

            fmt = probe_wav(row.path).format
        return read_audio(row.path, fmt, target_rate=self.sample_rate)

    def _commit(self, row: StreamRow, utts: list[Utterance], seconds: float, wall: float) -> None:
        now = self.store.one(row.id)
        if now is None or now.status not in ("ACTIVE", "PAUSED"):
            return  # closed or deleted while decoding: the abort wins
        final: dict[str, Any] = {
            "decoded_seconds": seconds,
            "decode_wall": wall,
            "sourceseconds": seconds,
        }
        if now.status == "PAUSED":
            final["resume_status"] = "DONE"
        else:
            final.update(status="DONE", ended=time.time())
        anchor = now.anchor
        self.store.add_utterances(
            row.id,
            [(u, None if anchor is None else anchor + u.end) for u in utts],
            skip_before=now.skip_before,
            **final,
        )
        log.info("decode.done", stream_id=row.id, source=row.source, utterances=len(utts))

    def _fail(self, row: StreamRow, message: str) -> None:
        self.store.update(row.id, status="ERROR", error=message, ended=time.time())
        log.warning("decode.error", stream_id=row.id, source=row.source, error=message)
        self.service.poke()


def _describe(row: StreamRow, exc: BaseException) -> str:
    if isinstance(exc, AudioDecodeError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"Cannot read {row.source}: {exc.strerror or exc}"
    return f"{row.source}: {exc}"


def _language(row: StreamRow) -> str | None:
    """The stream's ``language`` tag (validated at submission), if any."""
    lang = row.tags.get("language")
    return lang if isinstance(lang, str) else None
