"""Refresh, outputs and policy: one ``refreshstreams`` for every stream in flight.

A finished stream's utterances are written in every configured format
(atomically) and only then is its journal row marked DONE; its source is
then kept, deleted or moved as the watch says. A stream that ended in ERROR
is retried up to ``retry_errors`` times: its row goes back to SUBMITTING
under the same stream id and the submitter sends it again (the server
re-queues it) -- the one submission path; after that, ``<name>.error.json``
records why. The policy closes streams active too long, pauses and resumes
the daemon's own streams on the pause windows, and deletes finished streams
from the server after ``delete_after``.

One finished stream that cannot be handled (a write that fails, a stream
deleted on the server meanwhile, a bug) is logged once and left for the next
refresh, which sees it again as it then stands; the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from svwatchd.client.server import Server
from svwatchd.client.stream import Stream
from svwatchd.daemon._collaborators import Log, Metrics, file_log
from svwatchd.daemon._config import Policy
from svwatchd.daemon._isolation import WHOLE_STEP, Isolation, Once
from svwatchd.daemon._journal import FileRecord, FileState, Journal
from svwatchd.daemon._outputnames import MIX, language_for_name
from svwatchd.daemon._outputs import apply_after, write_transcripts
from svwatchd.daemon._stage import Stage, audio_facts, output_path, output_record
from svwatchd.daemon._watchconfig import WatchConfig
from svwatchd.daemon._watches import Watches
from svwatchd.errors import ServerError
from svwatchd.model.enums import DecodeStatus
from svwatchd.model.speechdata import Utterance

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
        watches: Watches,
        log: Log,
        metrics: Metrics,
        *,
        server: Callable[[], Server],
        policy: Callable[[], Policy],
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(journal, watches, log, metrics)
        self._server = server
        self._policy = policy
        self._now = wallclock
        self._finished: dict[str, tuple[FileRecord, Stream]] = {}  # refreshed, not yet handled
        self._refreshed_with: Server | None = None  # the client the finished ones are bound to
        self._engine_language: tuple[Server, str | None] | None = None  # sysinfo's, per client
        self._output_problems = Once()  # output.failed: once per stream and problem
        self._errors = Isolation("collect", metrics)

    def step(self) -> bool:
        """Refresh every stream in flight (one request, 2000 at most) and queue what finished;
        True when svserver was asked (and answered).

        Finished streams are handled by `drain`, a slice at a time, so writing
        a backlog of outputs never holds up the intake of new files.
        """
        rows = self.journal.by_state(FileState.INFLIGHT, limit=BATCH, watches=self.watches.ids)
        by_sid = {r.stream_id: r for r in rows if r.stream_id}
        if not by_sid:
            self.metrics.set_inflight(0)
            self._policy_step(self._server(), [], {})
            return False
        began = time.monotonic()
        server = self._server()
        if server is not self._refreshed_with:
            self._finished.clear()  # bound to a client the link replaced: refreshed again now
            self._refreshed_with = server
        streams, missing = server.getstreamsbyid(list(by_sid))
        self.metrics.observe_refresh(time.monotonic() - began)
        self.metrics.set_inflight(len(rows))
        for stream in streams:
            if stream.isdone() and stream.id not in self._finished:
                self._finished[stream.id] = (by_sid[stream.id], stream)
        for sid in missing:
            # the server does not know it (its data was lost): send it again, same id
            row = by_sid[sid]
            file_log(self.log, row).warning("stream.lost")
            self.journal.mark_submitting([row.id], [sid], [row.metadata])
        self._policy_step(server, streams, by_sid)
        return True

    def drain(self, budget: float = STEP_SECONDS) -> bool:
        """Handle finished streams for about ``budget`` seconds; True while some are left."""
        if not self._finished:
            return False
        if self._server() is not self._refreshed_with:
            self._finished.clear()  # the link replaced the client: the next refresh redoes them
            return False
        until = time.monotonic() + budget
        while self._finished and time.monotonic() < until:
            sid = next(iter(self._finished))
            row, stream = self._finished[sid]
            log = file_log(self.log, row)
            try:
                self._handle(row, stream, log)
            except WHOLE_STEP:
                raise  # kept queued: handled again once the server answers, the disk has room
            except OSError as exc:
                # e.g. disk full under the outputs: nothing is marked done; retried at each
                # refresh, logged once per stream and problem (not once per refresh)
                if self._output_problems.first(sid, str(exc)):
                    log.error("output.failed", error=str(exc))
            except Exception as exc:  # this stream's problem: the next refresh sees it again
                self._errors.failed(sid, exc, log)
            else:
                self._output_problems.clear(sid)
                self._errors.cleared(sid)
            del self._finished[sid]
        return bool(self._finished)

    def _handle(self, row: FileRecord, stream: Stream, log: Log) -> None:
        status = stream.status
        if self.watch_of(row) is None:
            return  # its watch was removed by a reload: the row waits for it to come back
        stats = stream.stats()
        mismatch = stats.get("language_mismatch")
        on_foreign = stream.tags.get("on_foreign", "decode")
        if mismatch is not None:
            log.warning(
                "language.mismatch",
                language=mismatch,
                probability=stats.get("language_mismatch_probability"),
                on_foreign=on_foreign,
            )
        if status is DecodeStatus.DONE:
            self._finish(row, stream, log)
        elif status is DecodeStatus.ERROR and mismatch is not None and on_foreign != "decode":
            # held by svserver for its language (on_foreign): not a failure; the reason
            # says what was heard, and the file is looked at again when the daemon starts
            reason = stream.error or f"held: speech in {mismatch}"
            if self.journal.mark_held(row.id, reason):
                log.warning("file.held", reason=reason)
        elif status is DecodeStatus.ERROR:
            retries = self._policy().retry_errors
            attempts = self.journal.record_error(row.id, stream.error, retries=retries)
            if 0 < attempts <= retries:  # back to SUBMITTING, same id: the submitter resends
                log.warning("stream.retry", attempt=attempts, error=stream.error)
            elif attempts > retries:
                self.fail(row, stream.error or "decoding failed")
        elif status is DecodeStatus.CLOSED:
            self.fail(row, "the stream was closed on the server before it finished")
        elif status is DecodeStatus.DELETED:
            self.fail(row, "the stream was deleted on the server before its outputs were written")

    def _only_language(self) -> str | None:
        """The one language svserver's engine decodes (``en`` for tiny.en or pocketsphinx;
        None when it detects), asked once per client: a stream an English-only model
        decoded is English although no language was heard (``{lang}`` in output names)."""
        server = self._server()
        if self._engine_language is None or self._engine_language[0] is not server:
            try:
                said = server.sysinfo().get("engine", {}).get("language")
            except ServerError:
                return None  # asked again next time
            self._engine_language = (server, said if isinstance(said, str) else None)
        language = self._engine_language[1]
        return None if language in (None, "detect") else language

    def _finish(self, row: FileRecord, stream: Stream, log: Log) -> None:
        watch = self.watch_of(row)
        assert watch is not None  # _handle checked
        utterances = stream.utterances()
        heard = stream.stats().get("language") or self._only_language()
        lang = language_for_name(row.metadata, heard)
        targets = [
            (output_path(watch, row.path, fmt, lang, channel), fmt, said)
            for channel, said in _by_channel(watch, utterances).items()
            for fmt in watch.formats
        ]
        if self._collides(row, [path for path, _, _ in targets]):
            return
        record = {**output_record(row), **audio_facts(stream)}
        written = write_transcripts(targets, record=record, mode=watch.output_mode)
        self.finished(row, watch, written, duration=stream.sourceseconds(), language=lang)
        self.metrics.done(row.watch)
        for path in written:
            log.info("output.written", path=str(path), source=row.path)
        log.info("stream.done", utterances=len(utterances))
        try:
            moved = apply_after(Path(row.path), watch.path, watch.after)
        except OSError as exc:
            log.error("file.after_failed", error=str(exc))
        else:
            if moved is not None:
                log.info("file.moved", to=str(moved))

    def _collides(self, row: FileRecord, paths: list[Path]) -> bool:
        """True (and the file failed, naming both) when one of ``paths`` is an output that
        another source's outputs still hold: two sources whose names give one output are
        refused, never written over one another."""
        owners = self.journal.output_owners(str(p) for p in paths)
        for path, source in sorted(owners.items()):
            if source != row.path and Path(path).exists():
                self.fail(
                    row,
                    f"its output {path} is already written for {source}: output.name gives "
                    "both files one name; change the template (e.g. add {ext} or {name}) or "
                    "move one of them",
                )
                return True
        return False

    # -- policy -------------------------------------------------------------------------

    def _policy_step(
        self, server: Server, streams: list[Stream], rows: dict[str, FileRecord]
    ) -> None:
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
                    log = file_log(self.log, rows[s.id]) if s.id in rows else self.log
                    log.warning(
                        "stream.closed",
                        stream_id=s.id,
                        reason=f"active longer than close_after ({policy.close_after:.0f} s)",
                    )
        if policy.pause_windows.active(now):
            to_pause = [s for s in running if not s.ispaused()]
            if to_pause:
                server.pausestreams(to_pause)
                self.log.info("policy.paused", count=len(to_pause))
        else:
            # outside the windows every stream of ours runs (also after a restart)
            mine = [s for s in running if s.ispaused()]
            if mine:
                server.resumestreams(mine)
                self.log.info("policy.resumed", count=len(mine))
        if policy.delete_after is not None:
            due = self.journal.due_for_cleanup(time.time() - policy.delete_after, BATCH)
            if due:
                handles, _ = server.getstreamsbyid([r.stream_id for r in due if r.stream_id])
                live = [h for h in handles if not h.isdeleted()]
                if live:
                    server.deletestreams(live)
                self.journal.mark_cleaned([r.id for r in due])
                self.log.info("policy.deleted", count=len(live))


def _by_channel(watch: WatchConfig, utterances: list[Utterance]) -> dict[str, list[Utterance]]:
    """The utterances of each output: one per channel label (``agent``, ``ch1``) when the
    name has ``{channel}`` and the channels were decoded apart, else all of them (``mix``)."""
    if not watch.output_name.per_channel or all(u.speaker is None for u in utterances):
        return {MIX: list(utterances)}
    out: dict[str, list[Utterance]] = {}
    for u in utterances:
        out.setdefault(u.speaker or MIX, []).append(u)
    return out
