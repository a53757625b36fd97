"""What the daemon's parts need of their collaborators: the log and the metrics, as types.

The log is structlog's `FilteringBoundLogger` protocol (what
``svwatchd._logs.configure_logging`` makes, and what ``structlog.get_logger``
gives before it). A part logs a file's events through `file_log`, which binds
the file's ``path`` (absolute) and ``stream_id`` once, the fields every file
event carries (the operators' contract). The metrics are anything with the
`Metrics` protocol's methods: `svwatchd.daemon._metrics.DaemonMetrics` in the
daemon, one of those on a private registry in tests.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias

from structlog.typing import FilteringBoundLogger

from svwatchd.daemon._journal_types import FileRecord

__all__ = ["Log", "Metrics", "file_log"]

Log: TypeAlias = FilteringBoundLogger


class Metrics(Protocol):
    """The counters and gauges the daemon's parts move (``watch`` is a `WatchId`)."""

    def detected(self, watch: str) -> None:
        """A new file (or a new version of one) was recorded in the journal."""

    def submitted(self, watch: str, n: int = 1) -> None:
        """The server accepted ``n`` streams of this watch."""

    def done(self, watch: str) -> None:
        """A file's outputs were written."""

    def failed(self, watch: str) -> None:
        """A file ended in error."""

    def retry(self, n: int = 1) -> None:
        """Submission attempts were repeated after a failure."""

    def isolated(self, step: str) -> None:
        """A step could not handle one file and went on without it."""

    def set_inflight(self, n: int) -> None:
        """Files submitted and not finished yet."""

    def observe_refresh(self, seconds: float) -> None:
        """One refresh of the streams in flight took ``seconds``."""

    def notify_sent(self, channel: str) -> None:
        """A notification was delivered (2xx, or the command exited 0)."""

    def notify_retry(self, channel: str) -> None:
        """A notification attempt failed and will be tried again."""

    def notify_failed(self, channel: str) -> None:
        """A notification was given up (``retry_for`` is over)."""


def file_log(log: Log, row: FileRecord) -> Log:
    """``log`` with the row's ``path`` and ``stream_id`` (None before submission) bound."""
    return log.bind(path=row.path, stream_id=row.stream_id)
