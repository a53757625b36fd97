"""The daemon's Prometheus metrics, on their own registry and their own loopback listener.

One :class:`DaemonMetrics` per daemon owns a private ``CollectorRegistry``
(never the process-global one), so two daemons in one test process, or a
daemon and an embedded server, never clash over metric names. The daemon
calls the small methods below where things happen; :meth:`DaemonMetrics.serve`
exposes ``/metrics`` over HTTP on the address of the config's
``metrics: {listen: HOST:PORT}`` (meant for 127.0.0.1: the endpoint has no
authentication).

Metrics (``watch`` is the watch folder's absolute path, as in the journal):

- ``svwatchd_files_detected_total{watch}``: new files (or new versions) recorded;
- ``svwatchd_files_submitted_total{watch}``: streams the server accepted;
- ``svwatchd_files_done_total{watch}``: outputs written;
- ``svwatchd_files_failed_total{watch}``: files that ended in error (``.error.json``);
- ``svwatchd_submission_retries_total``: submission attempts repeated after a failure;
- ``svwatchd_files_isolated_total{step}``: files a step (ingest, prepare, build, collect)
  could not handle and went on without, once per file and problem (``file.step_failed``);
- ``svwatchd_inflight``: files submitted and not yet finished;
- ``svwatchd_files{watch,state}``: journal rows by watch and state (PENDING, ...);
- ``svwatchd_server_up``: 1 when the server answered last time, 0 when it did not
  (NaN until the first attempt);
- ``svwatchd_journal_rows``: rows in the journal;
- ``svwatchd_refresh_seconds``: how long one refresh of the streams in flight took;
- ``svwatchd_notify_sent_total{channel}``, ``svwatchd_notify_retries_total{channel}``,
  ``svwatchd_notify_failed_total{channel}``: notifications delivered, attempts that
  failed and will be tried again, notifications given up (``channel``: webhook, exec);
- ``svwatchd_notify_pending``: notifications owed and not delivered yet;
- ``process_*``: the process's CPU, memory and open files.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from svwatchd._metrics import MetricsEndpoint, Served

__all__ = ["REFRESH_BUCKETS", "DaemonMetrics"]

_State = TypeVar("_State", bound=str)  # FileState (a StrEnum) or plain names
_Watch = TypeVar("_Watch", bound=str)  # WatchId or plain text

REFRESH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class DaemonMetrics(Served):
    """Counters and gauges of one daemon (`svwatchd.daemon._collaborators.Metrics`);
    thread-safe (prometheus_client locks its values)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._detected = Counter(
            "svwatchd_files_detected", "New files (or versions) recorded", ["watch"], registry=r
        )
        self._submitted = Counter(
            "svwatchd_files_submitted", "Files accepted by the server", ["watch"], registry=r
        )
        self._done = Counter(
            "svwatchd_files_done", "Files whose outputs were written", ["watch"], registry=r
        )
        self._failed = Counter(
            "svwatchd_files_failed", "Files that ended in error", ["watch"], registry=r
        )
        self._retries = Counter(
            "svwatchd_submission_retries",
            "Submission attempts repeated after a failure",
            registry=r,
        )
        self._isolated = Counter(
            "svwatchd_files_isolated",
            "Files a step could not handle and went on without (once per file and problem)",
            ["step"],
            registry=r,
        )
        self._inflight = Gauge(
            "svwatchd_inflight", "Files submitted and not finished yet", registry=r
        )
        self._files = Gauge(
            "svwatchd_files", "Journal rows by watch and state", ["watch", "state"], registry=r
        )
        self._server_up = Gauge(
            "svwatchd_server_up",
            "1 when svserver answered the last request, 0 when it did not (NaN: not tried yet)",
            registry=r,
        )
        self._server_up.set(math.nan)
        self._journal_rows = Gauge("svwatchd_journal_rows", "Rows in the journal", registry=r)
        self._refresh = Histogram(
            "svwatchd_refresh_seconds",
            "Duration of one refresh of the streams in flight",
            buckets=REFRESH_BUCKETS,
            registry=r,
        )
        self._notify = {
            what: Counter(f"svwatchd_notify_{what}", text, ["channel"], registry=r)
            for what, text in (
                ("sent", "Notifications delivered"),
                ("retries", "Notification attempts that failed and will be tried again"),
                ("failed", "Notifications given up after retry_for"),
            )
        }
        self._notify_pending = Gauge(
            "svwatchd_notify_pending", "Notifications owed and not delivered yet", registry=r
        )
        ProcessCollector(registry=r)
        self._lock = threading.Lock()
        self._endpoint: MetricsEndpoint | None = None
        self._file_labels: set[tuple[str, str]] = set()

    # -- what the daemon calls ---------------------------------------------------------

    def init_watches(self, watches: Iterable[str]) -> None:
        """Create the per-watch series at 0, so they exist before the first event.

        Call it at start and after a reload; a removed watch keeps its series
        (counters must not go backwards while the process lives).
        """
        for watch in watches:
            for counter in (self._detected, self._submitted, self._done, self._failed):
                counter.labels(watch=watch)

    def detected(self, watch: str) -> None:
        """A new file (or a new version of one) was recorded in the journal."""
        self._detected.labels(watch=watch).inc()

    def submitted(self, watch: str, n: int = 1) -> None:
        """The server accepted ``n`` streams of this watch."""
        if n > 0:
            self._submitted.labels(watch=watch).inc(n)

    def done(self, watch: str) -> None:
        """A file's outputs were written."""
        self._done.labels(watch=watch).inc()

    def failed(self, watch: str) -> None:
        """A file ended in error."""
        self._failed.labels(watch=watch).inc()

    def retry(self, n: int = 1) -> None:
        """Submission attempts were repeated after a failure."""
        if n > 0:
            self._retries.inc(n)

    def isolated(self, step: str) -> None:
        """A step could not handle one file and went on without it."""
        self._isolated.labels(step=step).inc()

    def set_inflight(self, n: int) -> None:
        """Files submitted and not finished yet."""
        self._inflight.set(n)

    def set_server_up(self, up: bool | None) -> None:
        """Whether the server answered last time; None: not known yet (NaN)."""
        self._server_up.set(math.nan if up is None else float(bool(up)))

    def set_journal_rows(self, n: int) -> None:
        """Rows in the journal."""
        self._journal_rows.set(n)

    def set_file_states(self, counts: Mapping[_Watch, Mapping[_State, int]]) -> None:
        """Journal rows by watch and state (``Journal.counts_by_watch()``).

        A (watch, state) pair seen before and absent now is set to 0, so a
        backlog that drained reads 0 rather than its last value.
        """
        seen: set[tuple[str, str]] = set()
        for watch, per_state in counts.items():
            for state, n in per_state.items():
                key = (str(watch), str(state))
                seen.add(key)
                self._files.labels(watch=key[0], state=key[1]).set(n)
        with self._lock:
            for gone_watch, gone_state in self._file_labels - seen:
                self._files.labels(watch=gone_watch, state=gone_state).set(0)
            self._file_labels |= seen

    def observe_refresh(self, seconds: float) -> None:
        """One refresh of the streams in flight took ``seconds``."""
        self._refresh.observe(max(0.0, seconds))

    def notify_sent(self, channel: str) -> None:
        """A notification was delivered (2xx, or the command exited 0)."""
        self._notify["sent"].labels(channel=channel).inc()

    def notify_retry(self, channel: str) -> None:
        """A notification attempt failed and will be tried again."""
        self._notify["retries"].labels(channel=channel).inc()

    def notify_failed(self, channel: str) -> None:
        """A notification was given up (``retry_for`` is over)."""
        self._notify["failed"].labels(channel=channel).inc()

    def set_notify_pending(self, n: int) -> None:
        """Notifications owed and not delivered yet."""
        self._notify_pending.set(n)
