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

import structlog

from svwatchd._audio import RawStreamDecoder
from svwatchd.model.enums import DecodeStatus
from svwatchd.server._changes import wait
from svwatchd.server._engines.base import Ask
from svwatchd.server._executor import Executor
from svwatchd.server._hearing import hearing_of, hold
from svwatchd.server._lifecycle import DECODING, Lifecycle, Progress
from svwatchd.server._segmenter import LiveSegmenter, Segment
from svwatchd.server._slots import Slots, cancel_all
from svwatchd.server._store import Store, StreamRow

__all__ = [
    "CONNECT_TIMEOUT",
    "READ_SIZE",
    "LiveSessions",
]

log = structlog.get_logger("svserver.live")

CONNECT_TIMEOUT = 10.0
READ_SIZE = 64 * 1024


class LiveSessions:
    """The socket streams' sessions: started by the scheduler, stopped by close and delete.

    Each session runs in a task that holds a decode slot until it ends.
    """

    def __init__(
        self,
        *,
        store: Store,
        lifecycle: Lifecycle,
        slots: Slots,
        executor: Executor,
        spool: Path,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._slots = slots
        self._executor = executor
        self._spool = spool
        spool.mkdir(parents=True, exist_ok=True)

    def start(self, row: StreamRow) -> None:
        """Start receiving and decoding one (ACTIVE) socket stream."""
        session = _Session(
            row, self._store, self._lifecycle, self._executor, self.spool_path(row.id)
        )
        task = asyncio.get_running_loop().create_task(session.run(), name=f"live-{row.id}")
        self._slots.hold_live(row.id, task)

    def stop(self, stream_id: str) -> None:
        """Stop a session (the stream was closed or deleted)."""
        task = self._slots.session(stream_id)
        if task is not None:
            task.cancel()

    def spool_path(self, stream_id: str) -> Path:
        """Where the stream's received audio is spooled."""
        return self._spool / f"{stream_id}.raw"

    def discard(self, stream_id: str) -> None:
        """Remove the stream's spool (it was deleted)."""
        self.spool_path(stream_id).unlink(missing_ok=True)

    async def close(self) -> None:
        """Stop every session; their streams stay ACTIVE and reconnect at the next start."""
        await cancel_all(self._slots.sessions())


class _Session:
    """One socket stream's connection, spool and decoder."""

    def __init__(
        self, row: StreamRow, store: Store, lifecycle: Lifecycle, executor: Executor, spool: Path
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.executor = executor
        self.row = row
        self.fmt = row.format
        self.bytes_per_second = row.samprate * self.fmt.frame_bytes
        self.spool = spool
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
                    seconds = self.received / self.bytes_per_second
                    self.store.record_received(self.row.id, self.received, seconds)
                    last_commit = now
                self.arrived.set()
                if not data:
                    self.eof = True
                    return

    def _arrival(self, offset: int) -> float | None:
        i = bisect.bisect_left(self._offsets, offset)
        return self._times[i] if i < len(self._times) else None

    async def _decode(self) -> None:
        position = self.row.decoded_bytes  # spool bytes whose audio is committed
        fed = position
        decoder = RawStreamDecoder(self.fmt)
        segmenter = LiveSegmenter(offset=position / self.bytes_per_second)
        frame = self.fmt.frame_bytes
        with open(self.spool, "a+b") as spool:
            while True:
                current = self.store.one(self.row.id)
                if current is None or current.status not in DECODING:
                    return
                if current.status is DecodeStatus.PAUSED:
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
                for seg in segments:  # current.ask: in the language detected so far, if any
                    if not await self._commit(seg, min(position, fed), current.ask):
                        return
                if self.eof and available <= 0:
                    self._finish(fed)
                    return

    async def _wait(self) -> None:
        self.arrived.clear()
        await wait(self.arrived, 0.25)

    async def _commit(self, seg: Segment, position: int, ask: Ask) -> bool:
        """Decode one segment and commit its utterances; False once the stream stopped."""
        began = time.monotonic()
        results = await asyncio.wrap_future(self.executor.submit([seg.audio], [ask]))
        wall = time.monotonic() - began
        heard = results[0]
        hearing = hearing_of(results, self.row)
        if hearing.held is not None:  # the session stops here; segments committed stay
            hold(self.lifecycle, self.row, hearing)
            return False
        utts = [u.shifted(seg.start) for u in heard.utterances]
        pairs = [(u, self._arrival(int(u.end * self.bytes_per_second))) for u in utts]
        progress = Progress(
            decoded_seconds=seg.end,
            decode_wall=wall,
            decoded_bytes=position,
            language=hearing.language,  # a segment with words decides
            language_probability=hearing.probability,
            mismatch=hearing.mismatch,
        )
        return self.lifecycle.commit(self.row.id, pairs, progress, final=False)

    def _finish(self, fed: int) -> None:
        progress = Progress(decoded_bytes=fed, received_bytes=self.received)
        if self.lifecycle.commit(self.row.id, [], progress, final=True):
            log.info("decode.done", stream_id=self.row.id, source=self.row.source)

    def _fail(self, message: str) -> None:
        if self.lifecycle.fail(self.row.id, message):
            log.warning(
                "decode.error", stream_id=self.row.id, source=self.row.source, error=message
            )
