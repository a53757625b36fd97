"""The stream lifecycle: submit, query, pause, resume, close, delete, listen.

Every transition is committed to the store before it is answered. All of it
runs on the server's event loop thread, so transitions never race with the
scheduler that moves streams between QUEUED, ACTIVE and DONE.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from svwatchd.audio import duration_seconds
from svwatchd.errors import (
    AudioDecodeError,
    InvalidInputError,
    PathNotAllowedError,
    SocketNotAllowedError,
)
from svwatchd.model.contract import is_language
from svwatchd.model.metadata import match_metadata
from svwatchd.model.speechdata import Utterance
from svwatchd.server.config import ServerConfig
from svwatchd.server.records import Listener, StreamSpec
from svwatchd.server.store import Store, StreamRow

__all__ = [
    "Rejection",
    "StreamService",
    "epoch_of",
]

_RUNNING = ("QUEUED", "ACTIVE", "PAUSED")


@dataclass(frozen=True)
class Rejection:
    """Why one stream of a submission was refused: an HTTP-like status and a machine code."""

    id: str
    status: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"id": self.id, "status": self.status, "code": self.code, "message": self.message}


class StreamService:
    """Owns the streams' state; the HTTP layer calls it, the scheduler reports to it."""

    def __init__(self, config: ServerConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.uploads = config.data_dir / "uploads"
        self.spool = config.data_dir / "spool"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(parents=True, exist_ok=True)
        self._listeners: dict[str, list[Listener]] = {}
        self._changed = asyncio.Condition()
        self.wake = asyncio.Event()  # set when the scheduler has something to look at
        self.on_stop: list[Any] = []  # callables(stream_id) told when a stream is closed
        self.engine_info: Callable[[], Mapping[str, Any]] = dict  # the app sets executor.info

    # -- notifications ------------------------------------------------------------------

    async def notify(self) -> None:
        """Tell listeners that streams changed (new utterances, new states)."""
        async with self._changed:
            self._changed.notify_all()

    def poke(self) -> None:
        """Wake the scheduler and listeners soon (callable from sync code on the loop)."""
        self.wake.set()
        asyncio.get_running_loop().create_task(self.notify())

    # -- submission ---------------------------------------------------------------------

    def submit(self, specs: Sequence[StreamSpec]) -> tuple[list[str], list[Rejection]]:
        """Create (or find again) each stream; idempotent by id.

        The same id with the same source returns the existing stream (a retried
        request never decodes twice); an id whose stream ended in ERROR is
        re-queued (a retry); a deleted id, or an id reused for another source,
        is refused with 409.
        """
        existing = self.store.get(s.id for s in specs)
        new_rows: list[dict[str, Any]] = []
        requeue: list[str] = []
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
                problem = self._resubmission_problem(old, spec)
                if problem is not None:
                    rejected.append(problem)
                elif old.status == "ERROR":
                    requeue.append(old.id)
                continue
            try:
                new_rows.append(self._new_row(spec, now))
            except _Refused as exc:
                rejected.append(exc.rejection)
        if new_rows:
            self.store.insert_streams(new_rows)
        if requeue:
            self.store.retry(requeue)
        if new_rows or requeue:
            self.poke()
        accepted = [s.id for s in specs if s.id not in {r.id for r in rejected}]
        return self.records(accepted)[0], rejected

    @staticmethod
    def _resubmission_problem(old: StreamRow, spec: StreamSpec) -> Rejection | None:
        if old.status == "DELETED":
            return Rejection(
                spec.id, 409, "deleted", f"stream {spec.id} was deleted; its id cannot be reused"
            )
        if old.spec != spec.canonical():
            return Rejection(
                spec.id,
                409,
                "id_conflict",
                f"stream id {spec.id} is already used for {old.source}; choose another id",
            )
        return None

    def _new_row(self, spec: StreamSpec, now: float) -> dict[str, Any]:
        fmt = spec.format
        path: str | None = None
        anchor: float | None = None
        seconds: float | None = None
        if spec.kind == "socket":
            assert spec.host is not None and spec.port is not None
            try:
                self.config.check_socket(spec.host, spec.port)
            except SocketNotAllowedError as exc:
                raise _Refused(spec.id, 400, "socket_not_allowed", str(exc)) from None
        else:
            path = self._source_path(spec)
            st = os.stat(path)
            try:
                seconds = duration_seconds(path, fmt)
            except (AudioDecodeError, OSError):
                seconds = None  # decoding will fail with the full reason
            mtime = spec.mtime if spec.kind == "upload" and spec.mtime else st.st_mtime
            anchor = mtime - (seconds or 0.0)
        self._check_language(spec)
        recorded_at = spec.tags.get("recorded_at")
        if isinstance(recorded_at, str):
            try:
                when = datetime.fromisoformat(recorded_at)
            except ValueError:
                raise _Refused(
                    spec.id, 400, "bad_recorded_at", f"recorded_at {recorded_at!r} is not ISO 8601"
                ) from None
            anchor = (when if when.tzinfo else when.astimezone()).timestamp()
        return {
            "id": spec.id,
            "kind": spec.kind,
            "source": spec.source,
            "path": path,
            "host": spec.host,
            "port": spec.port,
            "filetype": fmt.filetype if spec.kind != "socket" else None,
            "encoding": fmt.encoding.value,
            "sampwidth": fmt.sampwidth,
            "samprate": fmt.samprate,
            "channels": fmt.channels,
            "endian": fmt.endian.value,
            "tags": spec.tags,
            "spec": spec.canonical(),
            "status": "QUEUED",
            "created": now,
            "queued": now,
            "anchor": anchor,
            "sourceseconds": seconds,
        }

    def _check_language(self, spec: StreamSpec) -> None:
        """A ``language`` tag must be a language code the engine's model can decode."""
        lang = spec.tags.get("language")
        if lang is None:
            return
        if not isinstance(lang, str) or not is_language(lang):
            raise _Refused(
                spec.id,
                400,
                "bad_language",
                f"language {lang!r} is not a language code (e.g. 'en', 'de', 'haw')",
            )
        info = self.engine_info()
        if lang != "en" and not info.get("multilingual", False):
            model = info.get("model", info.get("engine", "the model"))
            raise _Refused(
                spec.id,
                400,
                "language_unsupported",
                f"stream {spec.id} is tagged language {lang!r}, but svserver's model {model} "
                "is English-only; run svserver with a multilingual model (--model DIR)",
            )

    def _source_path(self, spec: StreamSpec) -> str:
        if spec.kind == "upload":
            path = self.uploads / spec.id
            if not path.is_file():
                raise _Refused(
                    spec.id, 404, "upload_missing", f"no upload for stream {spec.id}; upload first"
                )
            return str(path)
        assert spec.path is not None
        if "\0" in spec.path:  # no file has one; the OS calls below would raise ValueError
            raise _Refused(spec.id, 400, "bad_path", f"path {spec.path!r} contains a NUL byte")
        try:
            real = self.config.check_path(spec.path)
        except PathNotAllowedError as exc:
            # A path that is not there at all is reported as missing, so a remote
            # client may upload it; one that exists but is outside the roots is not.
            if not os.path.lexists(spec.path):
                raise _Refused(
                    spec.id, 404, "path_not_found", f"{spec.path} does not exist on the server"
                ) from None
            raise _Refused(spec.id, 400, "path_not_allowed", str(exc)) from None
        if not real.is_file():
            code = "path_not_found" if not real.exists() else "not_a_file"
            raise _Refused(spec.id, 404, code, f"{spec.path} is not a readable file on the server")
        if not os.access(real, os.R_OK):
            raise _Refused(spec.id, 400, "unreadable", f"{spec.path} is not readable by svserver")
        return str(real)

    def upload_path(self, stream_id: str) -> Path:
        """Where an upload for ``stream_id`` is kept; refused once the stream exists."""
        row = self.store.one(stream_id)
        if row is not None:
            raise InvalidInputError(f"stream {stream_id} already exists; its upload is fixed")
        return self.uploads / stream_id

    # -- queries ------------------------------------------------------------------------

    def records(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Records (JSON text) of the given streams in order, and the unknown ids."""
        found = self.store.records_json(ids)
        out = [self._with_listeners(sid, found[sid]) for sid in ids if sid in found]
        return out, [sid for sid in ids if sid not in found]

    def query(self, matchers: Sequence[Mapping[str, object]]) -> list[str]:
        """Records (JSON text) of every stream not deleted matching any matcher (all if none)."""
        out = []
        for sid, tags, rec in self.store.live_records_json():
            if matchers:
                parsed = json.loads(rec)
                if not any(match_metadata(parsed["format"], json.loads(tags), m) for m in matchers):
                    continue
            out.append(self._with_listeners(sid, rec))
        return out

    def _with_listeners(self, stream_id: str, rec: str) -> str:
        listeners = self._listeners.get(stream_id)
        if not listeners:
            return rec
        data = json.loads(rec)
        data["listeners"] = [x.info() for x in listeners]
        return json.dumps(data)

    def utterances(self, stream_id: str) -> list[Utterance]:
        """The committed utterances, in time order, without those skipped by resume."""
        row = self._known(stream_id)
        if row.status == "DELETED":
            raise _Gone(stream_id)
        return [u.utterance for _, u in self.store.utterances(stream_id) if not u.skipped]

    def _known(self, stream_id: str) -> StreamRow:
        row = self.store.one(stream_id)
        if row is None:
            raise KeyError(stream_id)
        return row

    async def listen(self, stream_id: str, address: str) -> AsyncIterator[Utterance]:
        """Yield utterances as they are committed (earlier ones first) until the stream ends."""
        self._known(stream_id)
        listener = Listener(address, time.time())
        self._listeners.setdefault(stream_id, []).append(listener)
        last = -1
        try:
            while True:
                for idx, u in self.store.utterances(stream_id, after=last):
                    last = idx
                    if not u.skipped:
                        listener.sent += 1
                        yield u.utterance
                row = self.store.one(stream_id)
                if row is None or row.status not in _RUNNING:
                    if not self.store.utterances(stream_id, after=last):
                        return
                    continue
                async with self._changed:
                    with contextlib.suppress(TimeoutError):  # not wait_for (see Scheduler)
                        async with asyncio.timeout(1.0):
                            await self._changed.wait()
        finally:
            self._listeners[stream_id].remove(listener)
            if not self._listeners[stream_id]:
                del self._listeners[stream_id]

    # -- transitions --------------------------------------------------------------------

    def pause(self, ids: Sequence[str]) -> dict[str, bool]:
        """Pause streams that are queued or active; True for each one now PAUSED."""
        rows = self.store.get(ids)
        out: dict[str, bool] = {}
        for sid in ids:
            row = rows.get(sid)
            if row is None:
                out[sid] = False
            elif row.status == "PAUSED":
                out[sid] = True
            elif row.status in ("QUEUED", "ACTIVE"):
                self.store.update(sid, status="PAUSED", resume_status=row.status)
                out[sid] = True
            else:
                out[sid] = False
        self.poke()
        return out

    def resume(self, ids: Sequence[str], fromtime: float | None) -> dict[str, bool]:
        """Resume paused streams; ``fromtime`` (epoch s) skips utterances ending before it.

        A stream that is not paused is left as it is (True while it still runs, so
        a repeated resume is harmless), but ``fromtime`` still applies to it.
        """
        rows = self.store.get(ids)
        now = time.time()
        out: dict[str, bool] = {}
        for sid in ids:
            row = rows.get(sid)
            if row is None or row.status not in _RUNNING:
                out[sid] = False
                continue
            values: dict[str, Any] = {}
            if fromtime is not None:
                values["skip_before"] = fromtime
                self.store.skip_utterances_before(sid, fromtime)
            if row.status == "PAUSED":
                target = row.resume_status or "QUEUED"
                values.update(status=target, resume_status=None)
                if target == "DONE":
                    values["ended"] = now
            if values:
                self.store.update(sid, **values)
            out[sid] = True
        self.poke()
        return out

    def close(self, ids: Sequence[str]) -> dict[str, bool]:
        """Abort streams that are still running (CLOSED); what was decoded is kept."""
        rows = self.store.get(ids)
        now = time.time()
        out: dict[str, bool] = {}
        for sid in ids:
            row = rows.get(sid)
            if row is None or row.status == "DELETED":
                out[sid] = False
                continue
            if row.status in _RUNNING:
                self.store.update(sid, status="CLOSED", ended=now, resume_status=None)
                for callback in self.on_stop:
                    callback(sid)
            out[sid] = True
        self.poke()
        return out

    def delete(self, ids: Sequence[str]) -> dict[str, bool]:
        """Close streams and remove every artifact (utterances, spool, upload); keep a tombstone."""
        out = self.close(ids)
        rows = self.store.get(ids)
        for sid in ids:
            if sid not in rows:
                continue
            self.store.tombstone(sid)
            for leftover in (self.uploads / sid, self.spool / f"{sid}.raw"):
                leftover.unlink(missing_ok=True)
            out[sid] = True
        self.poke()
        return out


def epoch_of(fromtime: datetime | int | float | None) -> float | None:
    """``resume``'s ``fromtime``: None, -1 (now) or a datetime (naive = local time)."""
    if fromtime is None:
        return None
    if isinstance(fromtime, datetime):
        return (fromtime if fromtime.tzinfo else fromtime.astimezone()).timestamp()
    if fromtime == -1:
        return time.time()
    raise InvalidInputError(f"fromtime must be a datetime, -1 or None, not {fromtime!r}")


class _Refused(Exception):
    def __init__(self, stream_id: str, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(stream_id, status, code, message)


class _Gone(KeyError):
    """The stream was deleted."""
