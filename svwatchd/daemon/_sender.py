"""The submitter's sender thread: HTTP sends, one batch at a time, and nothing else.

The loop makes a `Batch` (the Streams of SUBMITTING rows and the client to
send them with) and hands it over; the sender sends it -- retried quickly a
few times while svserver is unreachable -- and hands back a `Sent` report,
which the loop applies on its next turn (the sender wakes it). The sender
owns no daemon state: the journal, the backoff, reachability and the server
link are the loop's. At most one batch waits while one is sent, so the
server's work on one batch overlaps the loop's work on the next.

After a failed send, a batch made before the failure is handed back unsent
(``skipped``): the loop learns of the failure from the report and backs off
before it hands those rows out again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from svwatchd.client.server import Server
from svwatchd.client.stream import Stream
from svwatchd.daemon._journal_types import FileRecord
from svwatchd.errors import ServerRefusedError, ServerUnavailableError

__all__ = ["QUICK_RETRIES", "Batch", "Sender", "Sent", "send"]

QUICK_RETRIES = 3  # attempts per batch before the loop backs off


@dataclass(frozen=True)
class Batch:
    """SUBMITTING rows on their way to the server (made by the loop, read by the sender).

    ``rows`` holds every row of the batch by stream id: those made into
    ``streams`` and those that could not be (``unbuildable``: stream id -> why;
    the server may already have their stream from an earlier send).
    """

    server: Server
    made: float  # the loop's clock when the batch was made
    rows: dict[str, FileRecord]
    streams: list[Stream] = field(default_factory=list)
    unbuildable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sent:
    """What became of one batch: the sender's report to the loop.

    ``error``: the batch's streams were not sent (the server unreachable, the
    whole request refused, or a bug); ``known``: which unbuildable stream ids
    the server has and can still finish (None when it was not asked);
    ``refused``: streams the server refused, with its reason.
    """

    batch: Batch
    refused: dict[str, str] = field(default_factory=dict)
    known: frozenset[str] | None = None
    retries: int = 0
    error: Exception | None = None
    skipped: bool = False


def send(batch: Batch, *, attempts: int = QUICK_RETRIES) -> Sent:
    """Send one batch (the sender thread's work, also callable directly): ask the server
    about the unbuildable rows, then submit the streams, ``attempts`` tries at most."""
    known: frozenset[str] | None = None
    try:
        if batch.unbuildable:
            # e.g. the file vanished after a send the server may have taken: ask it
            found, _ = batch.server.getstreamsbyid(list(batch.unbuildable))
            known = frozenset(s.id for s in found if not (s.isdeleted() or s.iserror()))
    except Exception as exc:  # reported to the loop, which owns what follows
        return Sent(batch, error=exc)
    if not batch.streams:
        return Sent(batch, known=known)
    refused: dict[str, str] = {}
    tries = 0
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(ServerUnavailableError),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=2),
            reraise=False,
        ):
            with attempt:
                tries += 1
                refused = _decode(batch)
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        error = cause if isinstance(cause, Exception) else exc
        return Sent(batch, known=known, retries=tries - 1, error=error)
    except Exception as exc:
        return Sent(batch, known=known, retries=tries - 1, error=exc)
    return Sent(batch, refused=refused, known=known, retries=tries - 1)


def _decode(batch: Batch) -> dict[str, str]:
    """Submit the batch's streams; the streams the server refused, with its reasons."""
    try:
        batch.server.decodestreams(batch.streams)
    except ServerRefusedError as exc:
        detail = exc.detail
        if not isinstance(detail, dict) or not all(k in batch.rows for k in detail):
            raise  # the whole request was refused (a wrong token, a limit)
        return {str(k): str(v.get("message", v)) for k, v in detail.items()}
    return {}


class Sender:
    """The sender thread and its two queues: batches in, `Sent` reports out."""

    def __init__(
        self,
        *,
        wakeup: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        attempts: int = QUICK_RETRIES,
    ) -> None:
        self._wakeup = wakeup  # the loop waits on it; set after each report
        self._clock = clock
        self._attempts = attempts
        self._outbox: queue.Queue[Batch | None] = queue.Queue(maxsize=1)
        self._reports: queue.SimpleQueue[Sent] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def full(self) -> bool:
        """True while a batch already waits: make the next one later."""
        return self._outbox.full()

    def put(self, batch: Batch) -> None:
        """Hand a batch over (starting the thread on first use); check `full` first."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="svwatchd-sender", daemon=True)
            self._thread.start()
        self._outbox.put(batch)

    def reports(self) -> list[Sent]:
        """The reports that came back since the last call."""
        out: list[Sent] = []
        while True:
            try:
                out.append(self._reports.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        failed_at = float("-inf")  # this thread's own: when its last send failed
        while True:
            batch = self._outbox.get()
            if batch is None:
                return
            if batch.made <= failed_at:
                report = Sent(batch, skipped=True)
            else:
                report = send(batch, attempts=self._attempts)
                if report.error is not None:
                    failed_at = self._clock()
            self._reports.put(report)
            self._wakeup()

    def close(self, timeout: float = 10.0) -> list[Batch]:
        """Stop after the batch being sent; returns the batch that waited, unsent (its rows
        stay SUBMITTING in the journal and go out again: the same stream ids)."""
        thread = self._thread
        dropped: list[Batch] = []
        if thread is None:
            return dropped
        while True:  # make room for the stop marker
            try:
                waiting = self._outbox.get_nowait()
            except queue.Empty:
                break
            if waiting is not None:
                dropped.append(waiting)
        self._outbox.put(None)
        thread.join(timeout)
        self._thread = None
        return dropped
