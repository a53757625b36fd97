"""Live socket streams: connect, spool what arrives, decode it segment by segment.

Receiving and decoding are two loops over one spool file: the receiver
appends whatever the socket sends (and keeps doing so while the stream is
paused); the decoder reads the spool from where it last committed, cuts it on
voice activity and decodes each closed segment at once, so listeners get an
utterance moments after it is spoken. Utterances are committed together with
the spool offset they cover, so after a restart the stream reconnects and
goes on from that offset: nothing twice, nothing lost.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from pathlib import Path
from typing import Any

import structlog

from svwatchd.audio import RawStreamDecoder
from svwatchd.model.format import AudioFormat
from svwatchd.server.scheduler import Executor, Scheduler
from svwatchd.server.segmenter import LiveSegmenter, Segment
from svwatchd.server.service import StreamService
from svwatchd.server.store import StreamRow

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_SIZE",
    "LiveSessions",
]

log = structlog.get_logger("svserver.live")

CONNECT_TIMEOUT = 10.0
READ_SIZE = 64 * 1024


class LiveSessions:
    """The running socket streams, started by the scheduler and stopped by close/delete."""

    def __init__(self, service: StreamService, scheduler: Scheduler, executor: Executor) -> None:
        self.service = service
        self.scheduler = scheduler
        self.executor = executor
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, row: StreamRow) -> asyncio.Task[None]:
        """Start receiving and decoding one socket stream."""
        session = _Session(self.service, self.executor, row)
        task = asyncio.get_running_loop().create_task(session.run(), name=f"live-{row.id}")
        self._tasks[row.id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.pop(row.id, None)
            self.scheduler.live.pop(row.id, None)
            self.service.wake.set()

        task.add_done_callback(done)
        return task

    def stop(self, stream_id: str) -> None:
        """Stop a session (the stream was closed or deleted)."""
        task = self._tasks.get(stream_id)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Stop every session; their streams stay ACTIVE and reconnect at the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _Session:
    def __init__(self, service: StreamService, executor: Executor, row: StreamRow) -> None:
        self.service = service
        self.store = service.store
        self.executor = executor
        self.row = row
        self.fmt = AudioFormat(
            filetype="RAW",
            encoding=row.encoding,  # type: ignore[arg-type]
            sampwidth=row.sampwidth,
            samprate=row.samprate,
            channels=row.channels,
            endian=row.endian,  # type: ignore[arg-type]
        )
        self.bytes_per_second = row.samprate * self.fmt.frame_bytes
        self.spool: Path = service.spool / f"{row.id}.raw"
        self.received = row.received_bytes
        self.eof = False
        self.arrived = asyncio.Event()
        self._offsets: list[int] = []  # end offset of each chunk received ...
        self._times: list[float] = []  # ... and when it arrived

    async def run(self) -> None:
        sid = self.row.id
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(self.row.host, self.row.port)
        except (OSError, TimeoutError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._fail(f"Cannot connect to socket source {self.row.source}: {reason or 'timeout'}")
            return
        log.info("decode.connected", stream_id=sid, source=self.row.source)
        receiver = asyncio.create_task(self._receive(reader))
        try:
            await self._decode()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("decode.live_failed", stream_id=sid)
            self._fail(f"decoding socket source {self.row.source} failed: {exc}")
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
            writer.close()

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        last_commit = 0.0
        with open(self.spool, "ab") as spool:
            spool.truncate(self.received)  # bytes past the committed count were never counted
            while True:
                try:
                    data = await reader.read(READ_SIZE)
                except (ConnectionError, OSError):
                    data = b""
                now = time.time()
                if data:
                    spool.write(data)
                    spool.flush()
                    self.received += len(data)
                    self._offsets.append(self.received)
                    self._times.append(now)
                if not data or now - last_commit >= 0.5:
                    self.store.update(
                        self.row.id,
                        received_bytes=self.received,
                        sourceseconds=self.received / self.bytes_per_second,
                    )
                    last_commit = now
                self.arrived.set()
                if not data:
                    self.eof = True
                    return

    def _arrival(self, offset: int) -> float | None:
        i = bisect.bisect_left(self._offsets, offset)
        return self._times[i] if i < len(self._times) else None

    async def _decode(self) -> None:
        row = self.store.one(self.row.id)
        assert row is not None
        position = row.decoded_bytes  # spool bytes whose audio is committed
        fed = position
        decoder = RawStreamDecoder(self.fmt)
        segmenter = LiveSegmenter(offset=position / self.bytes_per_second)
        frame = self.fmt.frame_bytes
        with open(self.spool, "a+b") as spool:
            while True:
                current = self.store.one(self.row.id)
                if current is None or current.status not in ("ACTIVE", "PAUSED"):
                    return
                if current.status == "PAUSED":
                    await self._wait()
                    continue
                available = (self.received - fed) // frame * frame
                if available > 0:
                    spool.seek(fed)
                    data = spool.read(min(available, 16 * READ_SIZE))
                    fed += len(data)
                    segments = segmenter.feed(decoder.feed(data))
                elif self.eof:
                    segments = segmenter.feed(decoder.flush()) + segmenter.flush()
                else:
                    await self._wait()
                    continue
                position = int(segmenter.position * self.bytes_per_second) // frame * frame
                for seg in segments:
                    await self._commit(seg, current.skip_before, min(position, fed))
                if self.eof and available <= 0:
                    self._finish(fed)
                    return

    async def _wait(self) -> None:
        self.arrived.clear()
        with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
            async with asyncio.timeout(0.25):
                await self.arrived.wait()

    async def _commit(self, seg: Segment, skip_before: float | None, position: int) -> None:
        began = time.monotonic()
        lang = self.row.tags.get("language")
        languages = [lang if isinstance(lang, str) else None]
        results: list[Any] = await asyncio.wrap_future(self.executor.submit([seg.audio], languages))
        wall = time.monotonic() - began
        utts = [_shift(u, seg.start) for u in results[0]]
        row = self.store.one(self.row.id)
        if row is None or row.status not in ("ACTIVE", "PAUSED"):
            return
        pairs = [(u, self._arrival(int(u.end * self.bytes_per_second))) for u in utts]
        self.store.add_utterances(
            self.row.id,
            pairs,
            skip_before=skip_before,
            decoded_bytes=position,
            decoded_seconds=seg.end,
            decode_wall=row.decode_wall + wall,
        )
        await self.service.notify()

    def _finish(self, fed: int) -> None:
        row = self.store.one(self.row.id)
        if row is None or row.status not in ("ACTIVE", "PAUSED"):
            return
        values: dict[str, Any] = {"decoded_bytes": fed, "received_bytes": self.received}
        if row.status == "PAUSED":
            values["resume_status"] = "DONE"
        else:
            values.update(status="DONE", ended=time.time())
        self.store.update(self.row.id, **values)
        log.info("decode.done", stream_id=self.row.id, source=self.row.source)
        self.service.poke()

    def _fail(self, message: str) -> None:
        self.store.update(self.row.id, status="ERROR", error=message, ended=time.time())
        log.warning("decode.error", stream_id=self.row.id, source=self.row.source, error=message)
        self.service.poke()


def _shift(utt: Any, offset: float) -> Any:
    from dataclasses import replace

    words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in utt.words)
    return replace(utt, start=utt.start + offset, end=utt.end + offset, words=words)
