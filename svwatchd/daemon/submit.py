"""From PENDING journal rows to streams on the server: metadata, Streams, idempotent sends.

Each file version's stream id is derived from its identity and committed
(SUBMITTING) before the request is sent, so a resend after a crash, a timeout
or an outage finds the same stream on the server instead of making a second.
Sends are retried with tenacity (exponential backoff with jitter) while the
server is unreachable; a refusal (4xx) is not retried: it fails the file with
the server's message. ``max_inflight`` bounds the streams submitted and not
finished, so a backlog waits in the journal, not in memory.

The HTTP sends run on one sender thread, a batch at a time, while the
daemon's loop hashes, records and builds the next batch: the server's work on
one batch overlaps the daemon's work on the next. Rows handed to the sender
stay SUBMITTING in the journal until the server has acknowledged them, so a
crash at any point re-sends them under the same ids.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from svwatchd.client.server import Server
from svwatchd.client.stream import Stream
from svwatchd.daemon.config import Policy, WatchConfig
from svwatchd.daemon.identity import stream_id_for
from svwatchd.daemon.journal import FileRecord, FileState, Journal
from svwatchd.daemon.metadata import Held, MetadataResolver
from svwatchd.daemon.stage import Stage
from svwatchd.errors import (
    InvalidStreamError,
    JournalWriteError,
    ServerRefusedError,
    ServerUnavailableError,
)

__all__ = [
    "BATCH",
    "Submitter",
]

BATCH = 500


@dataclass
class _Batch:
    """SUBMITTING rows made into Streams, on their way to the sender."""

    streams: list[Stream] = field(default_factory=list)
    by_sid: dict[str, FileRecord] = field(default_factory=dict)
    unbuildable: list[tuple[FileRecord, str]] = field(default_factory=list)
    ids: set[int] = field(default_factory=set)  # journal row ids


class Submitter(Stage):
    """Moves PENDING rows to the server, ``max_inflight`` at most."""

    def __init__(
        self,
        journal: Journal,
        log: Any,
        *,
        server: Callable[[], Server],
        watches: Callable[[], Sequence[WatchConfig]],
        resolvers: Callable[[str], MetadataResolver | None],
        policy: Callable[[], Policy],
        clock: Callable[[], float] = time.monotonic,
        quick_retries: int = 3,
        wakeup: Callable[[], None] = lambda: None,
        background: bool = True,
    ) -> None:
        super().__init__(journal, log, watches)
        self._server = server
        self._resolver = resolvers
        self._policy = policy
        self._clock = clock
        self._quick = quick_retries
        self._backoff = wait_exponential_jitter(multiplier=1, max=60, jitter=1)
        self._failures = 0
        self._next_try = 0.0
        self._held_logged: set[tuple[str, str]] = set()
        self.reachable: bool | None = None
        self.submitted = 0
        self._wakeup = wakeup  # the loop waits on it; the sender sets it after each batch
        self._background = background
        self._outbox: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._sending: set[int] = set()  # row ids in a batch not yet delivered
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def step(self) -> bool:
        """Submit what room allows (a batch at most); after an outage, wait out the backoff
        first. True when more PENDING rows may be waiting for room that is there now."""
        if self._clock() < self._next_try:
            return False
        busy = self.journal.count(FileState.SUBMITTING, FileState.INFLIGHT)
        room = self._policy().max_inflight - busy
        pending: list[FileRecord] = []
        moved = 0
        if room > 0:
            pending = self.journal.by_state(FileState.PENDING, limit=min(room, BATCH))
            moved = self._prepare(pending)
        for _ in range(20):  # bounded per tick
            if self._background and self._outbox.full():
                break  # the sender is busy: it wakes the loop when it is done
            with self._guard:
                taken = set(self._sending)
            rows = self.journal.by_state(FileState.SUBMITTING, limit=BATCH, exclude=taken)
            if not rows:
                break
            batch = self._build(rows)
            with self._guard:
                self._sending |= batch.ids
            if self._background:
                self._start_sender()
                self._outbox.put(batch)
            elif not self._deliver_and_release(batch):
                break
        return moved > 0 and len(pending) == min(room, BATCH)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the sender after the batch it is sending (rows not sent stay SUBMITTING
        in the journal and are sent again at the next start: the same stream ids)."""
        thread = self._thread
        if thread is None:
            return
        while True:  # make room for the stop marker: queued batches are dropped
            try:
                dropped = self._outbox.get_nowait()
            except queue.Empty:
                break
            if dropped is not None:
                self._release(dropped)
        self._outbox.put(None)
        thread.join(timeout)
        self._thread = None

    # -- PENDING -> SUBMITTING -----------------------------------------------------------

    def _prepare(self, rows: list[FileRecord]) -> int:
        """PENDING rows to SUBMITTING (or HELD, or REMOVED); returns how many moved."""
        ids, sids, metas = [], [], []
        moved = 0
        for row in rows:
            watch = self.watch_of(row)
            resolver = self._resolver(row.watch)
            if watch is None or resolver is None:
                continue  # its watch was removed by a reload: it waits
            try:
                meta = resolver.resolve(Path(row.path))
            except OSError as exc:
                self.journal.mark_removed(row.id)
                moved += 1
                self.log.info("file.vanished", path=row.path, error=exc.strerror or str(exc))
                continue
            if meta is None:
                continue  # a metadata file above it is still being written
            if isinstance(meta, Held):
                held = self.journal.mark_held(row.id, meta.reason)
                if held and (meta.file, meta.reason) not in self._held_logged:
                    self._held_logged.add((meta.file, meta.reason))  # once per change
                    self.log.error(
                        "metadata.invalid",
                        path=meta.file,
                        error=meta.reason,
                        detail="files under it are held until it is fixed",
                    )
                if held:
                    moved += 1
                    self.log.info("file.held", path=row.path, metadata_file=meta.file)
                continue
            ids.append(row.id)
            sids.append(row.stream_id or stream_id_for(row.watch, row.path, row.fingerprint))
            metas.append(meta)
        if ids:
            moved += len(self.journal.mark_submitting(ids, sids, metas))
        return moved

    # -- SUBMITTING -> INFLIGHT ----------------------------------------------------------

    def _build(self, rows: list[FileRecord]) -> _Batch:
        """Streams for SUBMITTING rows (each reads its file's header once, here)."""
        batch = _Batch()
        for row in rows:
            if row.stream_id is None:
                continue
            batch.ids.add(row.id)
            try:
                stream = Stream(row.path, **(row.metadata or {}))
                stream.id = row.stream_id
            except InvalidStreamError as exc:
                batch.unbuildable.append((row, str(exc)))
                continue
            batch.streams.append(stream)
            batch.by_sid[stream.id] = row
        return batch

    def _start_sender(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="svwatchd-sender", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """The sender thread: one batch at a time, while the loop builds the next."""
        while True:
            batch = self._outbox.get()
            if batch is None:
                return
            if self._clock() < self._next_try:
                self._release(batch)  # backing off: the loop hands these out again later
                continue
            self._deliver_and_release(batch)

    def _release(self, batch: _Batch) -> None:
        with self._guard:
            self._sending -= batch.ids
        self._wakeup()

    def _deliver_and_release(self, batch: _Batch) -> bool:
        try:
            return self._deliver(batch)
        except JournalWriteError as exc:
            # sent, perhaps, but not recorded: the rows stay SUBMITTING and are sent again
            # (same ids, so the server answers with the streams it already has)
            self.log.error(
                "journal.write_failed", error=str(exc), path=exc.path, free_bytes=exc.free_bytes
            )
            self._backoff_now()
            return False
        except Exception:  # a bug must not stop submission: the rows are sent again later
            self.log.exception("submit.failed")
            self._backoff_now()
            return False
        finally:
            self._release(batch)

    def _deliver(self, batch: _Batch) -> bool:
        """Send one batch; False when the server is unreachable (backing off)."""
        server = self._server()
        streams, by_sid, unbuildable = batch.streams, batch.by_sid, batch.unbuildable
        if unbuildable:
            # e.g. the file vanished after a send the server may have taken: ask it
            try:
                known, _ = server.getstreamsbyid(
                    [r.stream_id for r, _ in unbuildable if r.stream_id]
                )
            except ServerUnavailableError as exc:
                self._unreachable(exc)
                return False
            there = {s.id for s in known if not s.isdeleted()}
            self.journal.mark_inflight([r.id for r, _ in unbuildable if r.stream_id in there])
            for row, reason in unbuildable:
                if row.stream_id not in there:
                    self.fail(row, reason)
        if not streams:
            return True
        refused: dict[str, Any] = {}
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(ServerUnavailableError),
                stop=stop_after_attempt(self._quick),
                wait=wait_exponential_jitter(multiplier=0.2, max=2),
                reraise=False,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.metrics.retry()
                    try:
                        server.decodestreams(streams)
                    except ServerRefusedError as exc:
                        if not isinstance(exc.detail, dict) or not all(
                            k in by_sid for k in exc.detail
                        ):
                            raise
                        refused = exc.detail
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            self._unreachable(cause if isinstance(cause, Exception) else exc)
            return False
        except ServerRefusedError as exc:
            # the whole request was refused (a wrong token, a limit): files keep waiting
            self.log.error("server.refused", error=str(exc), status=exc.status_code)
            self._backoff_now()
            return False
        self._recovered()
        accepted = [s for s in streams if s.id not in refused]
        self.journal.mark_inflight([by_sid[s.id].id for s in accepted])
        for s in accepted:
            self.submitted += 1
            self.metrics.submitted(by_sid[s.id].watch)
            self.log.info(
                "stream.submitted",
                path=by_sid[s.id].path,
                stream_id=s.id,
                status=s.status.value if s.status else None,
            )
        for sid, reason in refused.items():
            self.fail(by_sid[sid], f"svserver refused it: {reason.get('message', reason)}")
        return True

    # -- outages ------------------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> None:
        if self.reachable is not False:
            self.log.warning(
                "server.unreachable",
                error=str(exc),
                detail="files wait in the journal until it answers",
            )
        self.reachable = False
        self._backoff_now()

    def _backoff_now(self) -> None:
        self._failures += 1
        from tenacity import RetryCallState

        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = self._failures
        self._next_try = self._clock() + self._backoff(state)

    def _recovered(self) -> None:
        if self.reachable is False:
            self.log.info("server.reachable")
        self.reachable = True
        self._failures = 0
        self._next_try = 0.0
