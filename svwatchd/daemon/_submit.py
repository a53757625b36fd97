"""From PENDING journal rows to streams on the server: metadata, Streams, idempotent sends.

Each file version's stream id is derived from its identity and committed
(SUBMITTING) before the request is sent, so a resend after a crash, a timeout
or an outage finds the same stream on the server instead of making a second.
Every submission takes this one path: a new file, a stream the server lost,
and a stream that ended in ERROR and is retried (the collector sends its row
back to SUBMITTING under the same id; the server re-queues it). A refusal
(4xx) of one stream fails its file with the server's message; an unreachable
server backs submission off (`svwatchd.daemon._link.Reachability`).
``max_inflight`` bounds the streams submitted and not finished, so a backlog
waits in the journal, not in memory.

This is the loop's side: it prepares rows, makes batches of Streams, hands
them to the sender thread (`svwatchd.daemon._sender`) and applies the
sender's reports -- the journal, the logs, the metrics and the backoff are
changed here, on the loop, only. Rows handed to the sender stay SUBMITTING
in the journal until the server has acknowledged them, so a crash at any
point re-sends them under the same ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from svwatchd.client.server import Server
from svwatchd.client.stream import Stream
from svwatchd.daemon._collaborators import Log, Metrics, file_log
from svwatchd.daemon._config import Policy
from svwatchd.daemon._identity import stream_id_for
from svwatchd.daemon._isolation import WHOLE_STEP, Isolation, Once
from svwatchd.daemon._journal import FileRecord, FileState, Journal
from svwatchd.daemon._link import Reachability
from svwatchd.daemon._metadata import Held
from svwatchd.daemon._outputnames import language_for_name
from svwatchd.daemon._sender import Batch, Sender, Sent
from svwatchd.daemon._stage import Stage, existing_outputs
from svwatchd.daemon._watches import Watches
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
_S = FileState


class Submitter(Stage):
    """Moves PENDING rows to the server, ``max_inflight`` at most; ``step()`` every turn."""

    def __init__(
        self,
        journal: Journal,
        watches: Watches,
        log: Log,
        metrics: Metrics,
        *,
        server: Callable[[], Server],
        reach: Reachability,
        policy: Callable[[], Policy],
        wakeup: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(journal, watches, log, metrics)
        self._server = server
        self.reach = reach
        self._policy = policy
        self._clock = clock
        self._sender = Sender(wakeup=wakeup, clock=clock)
        self._sending: set[int] = set()  # ids of rows in a batch not reported back yet
        self._held = Once()  # metadata files reported invalid (logged once per problem)
        self._prepare_errors = Isolation("prepare", metrics)
        self._build_errors = Isolation("build", metrics)

    @property
    def sending(self) -> bool:
        """True while a batch is out with the sender (its client is in use)."""
        return bool(self._sending)

    def step(self) -> bool:
        """Apply the sender's reports, then submit what room allows (a batch at most); after
        an outage, wait out the backoff first. True when more PENDING rows may be waiting
        for room that is there now."""
        self._take_reports()
        if self.reach.waiting():
            return False
        scope = self.watches.ids  # rows of a watch a reload removed wait for it
        busy = self.journal.count(_S.SUBMITTING, _S.INFLIGHT, watches=scope)
        room = self._policy().max_inflight - busy
        pending: list[FileRecord] = []
        moved = 0
        if room > 0:
            pending = self.journal.by_state(_S.PENDING, limit=min(room, BATCH), watches=scope)
            moved = self._prepare(pending)
        for _ in range(20):  # bounded per turn
            if self._sender.full:
                break  # the sender is busy: it wakes the loop when it is done
            rows = self.journal.by_state(
                _S.SUBMITTING, limit=BATCH, watches=scope, exclude=self._sending
            )
            batch = self._build(rows)
            if not batch.rows:
                break
            self._sending |= {row.id for row in batch.rows.values()}
            self._sender.put(batch)
        return moved > 0 and len(pending) == min(room, BATCH)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the sender after the batch it is sending and record what it reported (rows
        not sent stay SUBMITTING in the journal and are sent again at the next start)."""
        self._sender.close(timeout)
        try:
            self._take_reports()
        except JournalWriteError as exc:  # stopping: the rows stay SUBMITTING, sent again
            self.log.error(
                "journal.write_failed", error=str(exc), path=exc.path, free_bytes=exc.free_bytes
            )

    def _take_reports(self) -> None:
        """Apply the sender's reports. Their rows are released first, all of them: a report
        that fails to apply (the journal's disk full) leaves its rows SUBMITTING, to be
        handed out and sent again -- never held back as if still with the sender."""
        reports = self._sender.reports()
        for report in reports:
            self._sending -= {row.id for row in report.batch.rows.values()}
        for report in reports:
            self._apply(report)

    # -- PENDING -> SUBMITTING -----------------------------------------------------------

    def _prepare(self, rows: list[FileRecord]) -> int:
        """PENDING rows to SUBMITTING (or HELD, or REMOVED); returns how many moved."""
        ids, sids, metas = [], [], []
        moved = 0
        for row in rows:
            try:
                meta, changed = self._resolve(row)
            except WHOLE_STEP:
                raise
            except Exception as exc:  # this row's problem: hold it, go on with the others
                problem = self._prepare_errors.failed(row.id, exc, file_log(self.log, row))
                moved += self.journal.mark_held(row.id, f"could not prepare it: {problem}")
                continue
            moved += changed
            if meta is not None and self._skip_if_exists(row, meta):
                moved += 1
            elif meta is not None:
                ids.append(row.id)
                sids.append(row.stream_id or stream_id_for(row.path, row.fingerprint))
                metas.append(meta)
        if ids:
            moved += len(self.journal.mark_submitting(ids, sids, metas))
        return moved

    def _skip_if_exists(self, row: FileRecord, meta: dict[str, object]) -> bool:
        """``skip_if_exists``: a file whose outputs are all there already is DONE without
        decoding (``file.skipped``; its ``done`` notification says ``skipped``)."""
        watch = self.watch_of(row)
        if watch is None or not watch.skip_if_exists:
            return False
        found = existing_outputs(watch, row.path, meta)
        if found is None:
            return False
        language = language_for_name(meta)
        if self.finished(row, watch, found, language=language, skipped=True):
            file_log(self.log, row).info(
                "file.skipped", reason="its outputs exist", outputs=[str(p) for p in found]
            )
        return True

    def _resolve(self, row: FileRecord) -> tuple[dict[str, object] | None, bool]:
        """The row's metadata to submit with (None: not now) and whether the row moved
        instead (held under a broken metadata file, or removed: its file is gone)."""
        resolver = self.watches.resolver(row.watch)
        if resolver is None:
            return None, False  # its watch was removed by a reload: it waits
        log = file_log(self.log, row)
        try:
            meta = resolver.resolve(Path(row.path))
        except OSError as exc:
            removed = self.journal.mark_removed(row.id)
            log.info("file.vanished", error=exc.strerror or str(exc))
            return None, removed
        if not isinstance(meta, Held):
            return meta, False  # None: a metadata file above it is still being written
        held = self.journal.mark_held(row.id, meta.reason)
        if held:
            if self._held.first(meta.file, meta.reason):
                self.log.error(
                    "metadata.invalid",
                    path=meta.file,
                    error=meta.reason,
                    detail="files under it are held until it is fixed",
                )
            log.info("file.held", metadata_file=meta.file)
        return None, held

    # -- SUBMITTING -> INFLIGHT ----------------------------------------------------------

    def _build(self, rows: list[FileRecord]) -> Batch:
        """Streams for SUBMITTING rows (each reads its file's header once, here)."""
        batch = Batch(self._server(), self._clock(), {})
        for row in rows:
            if row.stream_id is None:
                continue
            batch.rows[row.stream_id] = row
            try:
                stream = Stream(row.path, **(row.metadata or {}))
                stream.id = row.stream_id
            except InvalidStreamError as exc:
                batch.unbuildable[row.stream_id] = str(exc)
                continue
            except WHOLE_STEP:
                raise
            except Exception as exc:  # this row's problem: the server decides (see _apply)
                problem = self._build_errors.failed(row.id, exc, file_log(self.log, row))
                batch.unbuildable[row.stream_id] = f"could not build its stream: {problem}"
                continue
            batch.streams.append(stream)
        return batch

    def _apply(self, sent: Sent) -> None:
        """Record what the sender reports of one batch (on the loop)."""
        batch = sent.batch
        if sent.skipped:
            return  # sent again once the backoff is over
        self.metrics.retry(sent.retries)
        if sent.known is not None:
            self.journal.mark_inflight([batch.rows[sid].id for sid in sent.known])
            for sid, reason in batch.unbuildable.items():
                if sid not in sent.known:
                    self.fail(batch.rows[sid], reason)
        if sent.error is not None:
            self._failed(sent.error)
            return
        if not batch.streams:
            return
        self.reach.answered()
        accepted = [s for s in batch.streams if s.id not in sent.refused]
        self.journal.mark_inflight([batch.rows[s.id].id for s in accepted])
        for stream in accepted:
            row = batch.rows[stream.id]
            if row.attempts:  # a retry of a stream that ended in ERROR: stream.retry said so
                continue
            self.metrics.submitted(row.watch)
            status = stream.status.value if stream.status else None
            file_log(self.log, row).info("stream.submitted", status=status)
        for sid, reason in sent.refused.items():
            self.fail(batch.rows[sid], f"svserver refused it: {reason}")

    def _failed(self, exc: Exception) -> None:
        """The batch was not sent: rows stay SUBMITTING; submission backs off."""
        if isinstance(exc, ServerUnavailableError):
            self.reach.unreachable(exc)
        elif isinstance(exc, ServerRefusedError):
            # the whole request was refused (a wrong token, a limit): files keep waiting
            self.log.error("server.refused", error=str(exc), status=exc.status_code)
            self.reach.back_off()
        else:  # a bug must not stop submission: the rows are sent again later
            self.log.error("submit.failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
            self.reach.back_off()
