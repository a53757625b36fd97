"""svserver's Prometheus metrics, on their own registry and their own loopback listener.

One :class:`ServerMetrics` per server owns a private ``CollectorRegistry``
(never the process-global one). What is counted as it happens (jobs, audio
seconds) is recorded by :meth:`ServerMetrics.observe_job`; what is a state
(streams by state, busy workers) is read from callbacks when Prometheus
scrapes, so the database is queried once per scrape, never per request.
``svserver serve --metrics HOST:PORT`` serves ``/metrics`` with
:meth:`ServerMetrics.serve` (meant for 127.0.0.1: no authentication).

Metrics:

- ``svserver_streams{state}``: streams by state (QUEUED ... DELETED tombstones),
  every state present, 0 when none;
- ``svserver_workers_busy``: decode slots in use (file jobs plus live sockets);
- ``svserver_queue_wait_seconds``: from QUEUED to ACTIVE, one observation per stream;
- ``svserver_decode_seconds``: wall time of one decode job (a job may pack clips);
- ``svserver_audio_seconds_decoded_total``: seconds of audio decoded;
- ``svserver_real_time_factor``: decode wall time / audio seconds of the last job
  (0.05 = twenty times faster than real time);
- ``svserver_metrics_callback_errors_total{metric}``: scrapes where a callback failed
  (that metric is then left out of the scrape);
- ``process_*``: the server process's CPU, memory and open files (not its workers').
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from svwatchd._metrics import MetricsEndpoint, Served
from svwatchd.model.enums import DecodeStatus

__all__ = [
    "DECODE_BUCKETS",
    "QUEUE_WAIT_BUCKETS",
    "MetricsEndpoint",
    "ServerMetrics",
    "StreamCounts",
    "WorkersBusy",
]

QUEUE_WAIT_BUCKETS = (
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
    21600.0, 86400.0,
)  # fmt: skip
DECODE_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip

StreamCounts = Callable[[], Mapping[str, int]]
WorkersBusy = Callable[[], int]


class _StateCollector(Collector):
    """``svserver_streams`` and ``svserver_workers_busy``, read from callbacks at scrape time."""

    def __init__(self, owner: ServerMetrics) -> None:
        self._owner = owner

    def describe(self) -> Iterable[Metric]:
        # names only: registering must not call the callbacks (the store may not be open yet)
        return [self._streams_family(), self._busy_family()]

    @staticmethod
    def _streams_family() -> GaugeMetricFamily:
        return GaugeMetricFamily("svserver_streams", "Streams by state", labels=["state"])

    @staticmethod
    def _busy_family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "svserver_workers_busy", "Decode slots in use (file jobs and live sockets)"
        )

    def collect(self) -> Iterable[Metric]:
        owner = self._owner
        if owner.stream_counts is not None:
            try:
                counts = dict(owner.stream_counts())
            except Exception:  # a scrape must not fail because the store is closing
                owner.callback_failed("svserver_streams")
            else:
                family = self._streams_family()
                for status in DecodeStatus:
                    counts.setdefault(status.value, 0)
                for state, n in sorted(counts.items()):
                    family.add_metric([str(state)], float(n))
                yield family
        if owner.workers_busy is not None:
            try:
                busy = float(owner.workers_busy())
            except Exception:
                owner.callback_failed("svserver_workers_busy")
            else:
                family = self._busy_family()
                family.add_metric([], busy)
                yield family


class ServerMetrics(Served):
    """svserver's metrics; thread-safe (the endpoint scrapes from its own thread).

    ``stream_counts`` (streams by state, e.g. ``Store.counts``) and
    ``workers_busy`` are called at scrape time; set them when the store and
    the scheduler exist (:meth:`bind`). Until then those metrics are absent.
    """

    def __init__(
        self,
        *,
        stream_counts: StreamCounts | None = None,
        workers_busy: WorkersBusy | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.stream_counts = stream_counts
        self.workers_busy = workers_busy
        r = self.registry
        self._queue_wait = Histogram(
            "svserver_queue_wait_seconds",
            "Time a stream waited in QUEUED before it became ACTIVE",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self._decode = Histogram(
            "svserver_decode_seconds",
            "Wall time of one decode job",
            buckets=DECODE_BUCKETS,
            registry=r,
        )
        self._audio = Counter(
            "svserver_audio_seconds_decoded", "Seconds of audio decoded", registry=r
        )
        self._rtf = Gauge(
            "svserver_real_time_factor",
            "Decode wall time divided by audio duration, of the last job (lower is faster)",
            registry=r,
        )
        self._callback_errors = Counter(
            "svserver_metrics_callback_errors",
            "Scrapes where reading a metric failed (it was left out)",
            ["metric"],
            registry=r,
        )
        for metric in ("svserver_streams", "svserver_workers_busy"):
            self._callback_errors.labels(metric=metric)
        r.register(_StateCollector(self))
        ProcessCollector(registry=r)
        self._lock = threading.Lock()
        self._endpoint: MetricsEndpoint | None = None

    def bind(
        self,
        *,
        stream_counts: StreamCounts | None = None,
        workers_busy: WorkersBusy | None = None,
    ) -> None:
        """Set the scrape-time callbacks (those given); pass them again after a restart."""
        if stream_counts is not None:
            self.stream_counts = stream_counts
        if workers_busy is not None:
            self.workers_busy = workers_busy

    def unbind(self) -> None:
        """Forget the callbacks (call before closing the store)."""
        self.stream_counts = None
        self.workers_busy = None

    def callback_failed(self, metric: str) -> None:
        """Count a failed scrape-time callback."""
        self._callback_errors.labels(metric=metric).inc()

    # -- what the scheduler calls ----------------------------------------------------------

    def observe_queue_wait(self, seconds: float) -> None:
        """One stream left QUEUED after ``seconds`` (e.g. a live socket that connected)."""
        self._queue_wait.observe(max(0.0, seconds))

    def observe_job(
        self,
        queue_wait: float | Iterable[float] | None,
        decode_seconds: float,
        audio_seconds: float,
    ) -> None:
        """One decode job finished.

        ``queue_wait``: each packed stream's wait in QUEUED (one number for a
        job of one stream; None when already observed); ``decode_seconds``: the
        job's wall time; ``audio_seconds``: the audio it decoded.
        """
        if queue_wait is not None:
            waits = [queue_wait] if isinstance(queue_wait, int | float) else list(queue_wait)
            for wait in waits:
                self.observe_queue_wait(wait)
        self._decode.observe(max(0.0, decode_seconds))
        if audio_seconds > 0:
            self._audio.inc(audio_seconds)
            self._rtf.set(max(0.0, decode_seconds) / audio_seconds)
