"""Refresh, outputs and policy: one ``refreshstreams`` for every stream in flight.

A finished stream's utterances are written in every configured format
(atomically) and only then is its journal row marked DONE; its source is
then kept, deleted or moved as the watch says. A stream that ended in ERROR
is resubmitted under the same id (the server re-queues it) up to
``retry_errors`` times, then ``<name>.error.json`` records why. The policy
closes streams active too long, pauses and resumes the daemon's own streams
on the pause windows, and deletes finished streams from the server after
``delete_after``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from svwatchd.client.server import Server
from svwatchd.client.stream import Stream
from svwatchd.daemon.config import Policy, WatchConfig
from svwatchd.daemon.journal import FileRecord, FileState, Journal
from svwatchd.daemon.outputs import apply_after, output_base, write_transcripts
from svwatchd.daemon.stage import Stage, output_record
from svwatchd.errors import InvalidStreamError, ServerRefusedError, ServerUnavailableError
from svwatchd.model.enums import DecodeStatus

__all__ = [
    "BATCH",
    "STEP_SECONDS",
    "Collector",
]

BATCH = 2000
STEP_SECONDS = 5.0  # finished streams handled per drain, at most this long (by default)


class Collector(Stage):
    """Collects finished streams and applies the policy; ``step()`` once per refresh."""

    def __init__(
        self,
        journal: Journal,
        log: Any,
        *,
        server: Callable[[], Server],
        watches: Callable[[], Sequence[WatchConfig]],
        policy: Callable[[], Policy],
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(journal, log, watches)
        self._server = server
        self._policy = policy
        self._now = wallclock
        self.paused_by_us: set[str] = set()
        self.done = 0
        self.last_refresh_seconds = 0.0
        self.inflight = 0
        self._finished: dict[str, tuple[FileRecord, Stream]] = {}  # refreshed, not yet handled
        self._output_problems: dict[str, str] = {}  # stream id -> the error last logged

    def step(self) -> None:
        """Refresh every stream in flight (one request, 2000 at most) and queue what finished.

        Finished streams are handled by `drain`, a slice at a time, so writing
        a backlog of outputs never holds up the intake of new files.
        """
        rows = self.journal.by_state(FileState.INFLIGHT, limit=BATCH)
        self.inflight = len(rows)
        by_sid = {r.stream_id: r for r in rows if r.stream_id}
        began = time.monotonic()
        server = self._server()
        streams, missing = server.getstreamsbyid(list(by_sid))
        self.last_refresh_seconds = time.monotonic() - began
        self.metrics.observe_refresh(self.last_refresh_seconds)
        self.metrics.set_inflight(len(rows))
        for stream in streams:
            if stream.isdone() and stream.id not in self._finished:
                self._finished[stream.id] = (by_sid[stream.id], stream)
        for sid in missing:
            # the server does not know it (its data was lost): send it again, same id
            row = by_sid[sid]
            self.log.warning("stream.lost", path=row.path, stream_id=sid)
            self.journal.mark_submitting([row.id], [sid], [row.metadata])
        self._policy_step(server, streams)

    def drain(self, budget: float = STEP_SECONDS) -> bool:
        """Handle finished streams for about ``budget`` seconds; True while some are left."""
        if not self._finished:
            return False
        server = self._server()
        until = time.monotonic() + budget
        while self._finished and time.monotonic() < until:
            sid = next(iter(self._finished))
            row, stream = self._finished[sid]
            try:
                self._handle(server, row, stream)
            except (ServerUnavailableError, ServerRefusedError):
                raise  # kept queued: handled again once the server answers
            except OSError as exc:
                # e.g. disk full under the outputs: nothing is marked done; retried at each
                # refresh, logged once per stream and problem (not once per refresh)
                if self._output_problems.get(sid) != str(exc):
                    self._output_problems[sid] = str(exc)
                    self.log.error(
                        "output.failed", path=row.path, stream_id=stream.id, error=str(exc)
                    )
            else:
                self._output_problems.pop(sid, None)
            del self._finished[sid]
        return bool(self._finished)

    def _handle(self, server: Server, row: FileRecord, stream: Stream) -> None:
        status = stream.status
        if status is DecodeStatus.DONE:
            self._finish(server, row, stream)
        elif status is DecodeStatus.ERROR:
            attempts = self.journal.record_attempt(row.id, stream.error)
            if attempts <= self._policy().retry_errors:
                self.log.warning(
                    "stream.retry",
                    path=row.path,
                    stream_id=stream.id,
                    attempt=attempts,
                    error=stream.error,
                )
                self._resubmit(server, row)
            else:
                self.fail(row, stream.error or "decoding failed")
        elif status is DecodeStatus.CLOSED:
            self.fail(row, "the stream was closed on the server before it finished")
        elif status is DecodeStatus.DELETED:
            self.fail(row, "the stream was deleted on the server before its outputs were written")

    def _finish(self, server: Server, row: FileRecord, stream: Stream) -> None:
        watch = self.watch_of(row)
        if watch is None:
            return  # its watch was removed by a reload; outputs wait for it to come back
        utterances = stream.utterances()
        base = output_base(Path(row.path), watch.path, watch.output_dir)
        written = write_transcripts(base, utterances, watch.formats, record=output_record(row))
        self.journal.mark_done(row.id)
        self.done += 1
        self.metrics.done(row.watch)
        for path in written:
            self.log.info("output.written", path=str(path), source=row.path, stream_id=stream.id)
        self.log.info("stream.done", path=row.path, stream_id=stream.id, utterances=len(utterances))
        try:
            moved = apply_after(Path(row.path), watch.path, watch.after)
        except OSError as exc:
            self.log.error("file.after_failed", path=row.path, error=str(exc))
        else:
            if moved is not None:
                self.log.info("file.moved", path=row.path, to=str(moved))

    def _resubmit(self, server: Server, row: FileRecord) -> None:
        try:
            stream = Stream(row.path, **(row.metadata or {}))
            stream.id = row.stream_id or ""
        except InvalidStreamError as exc:
            self.fail(row, str(exc))
            return
        server.decodestreams(stream)

    # -- policy -------------------------------------------------------------------------

    def _policy_step(self, server: Server, streams: list[Stream]) -> None:
        policy = self._policy()
        now = self._now()
        running = [
            s
            for s in streams
            if s.status in (DecodeStatus.QUEUED, DecodeStatus.ACTIVE, DecodeStatus.PAUSED)
        ]
        if policy.close_after is not None:
            stale = [
                s
                for s in running
                if s.isactive()
                and s.start is not None
                and (now - s.start).total_seconds() > policy.close_after
            ]
            if stale:
                server.closestreams(stale)
                for s in stale:
                    self.log.warning(
                        "stream.closed",
                        stream_id=s.id,
                        reason=f"active longer than close_after ({policy.close_after:.0f} s)",
                    )
        inside = policy.pause_windows.active(now)
        if inside:
            to_pause = [s for s in running if not s.ispaused()]
            if to_pause:
                server.pausestreams(to_pause)
                self.paused_by_us.update(s.id for s in to_pause)
                self.log.info("policy.paused", count=len(to_pause))
        else:
            # outside the windows every stream of ours runs (also after a restart)
            mine = [s for s in running if s.ispaused()]
            if mine:
                server.resumestreams(mine)
                self.log.info("policy.resumed", count=len(mine))
            self.paused_by_us.clear()
        if policy.delete_after is not None:
            due = self.journal.due_for_cleanup(time.time() - policy.delete_after, BATCH)
            if due:
                handles, _ = server.getstreamsbyid([r.stream_id for r in due if r.stream_id])
                live = [h for h in handles if not h.isdeleted()]
                if live:
                    server.deletestreams(live)
                self.journal.mark_cleaned([r.id for r in due])
                self.log.info("policy.deleted", count=len(live))
