"""What the daemon's stages share: the journal, the watches, and how a file fails.

A file that cannot be transcribed -- refused by the server, a bad header,
retries exhausted -- gets ``<name>.error.json`` beside where its transcript
would be, a FAILED journal row with the reason, and one ``stream.error`` line;
the same whichever stage found the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from svwatchd.daemon.config import WatchConfig
from svwatchd.daemon.journal import FileRecord, Journal
from svwatchd.daemon.outputs import output_base, write_error

__all__ = ["NoMetrics", "Stage", "output_record"]


class NoMetrics:
    """Stands in for DaemonMetrics when none is configured: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def output_record(row: FileRecord) -> dict[str, Any]:
    """What every output JSON records about its source (enough to rebuild the journal)."""
    return {
        "source_path": row.path,
        "fingerprint": row.fingerprint,
        "stream_id": row.stream_id,
        "watch": row.watch,
        "metadata": row.metadata or {},
    }


class Stage:
    """Base of the submitter and the collector."""

    def __init__(
        self, journal: Journal, log: Any, watches: Callable[[], Sequence[WatchConfig]]
    ) -> None:
        self.journal = journal
        self.log = log
        self._watches = watches
        self.metrics: Any = NoMetrics()  # DaemonMetrics, when the daemon sets one
        self.failed = 0

    def watch_of(self, row: FileRecord) -> WatchConfig | None:
        """The watch a row belongs to (None once a reload removed it)."""
        return next((w for w in self._watches() if str(w.path) == row.watch), None)

    def fail(self, row: FileRecord, reason: str) -> None:
        """Record that the file cannot be transcribed: error file, FAILED row, one log line."""
        watch = self.watch_of(row)
        if watch is not None:
            base = output_base(Path(row.path), watch.path, watch.output_dir)
            write_error(base, reason=reason, record=output_record(row))
        self.journal.mark_failed(row.id, reason)
        self.failed += 1
        self.metrics.failed(row.watch)
        self.log.error("stream.error", path=row.path, stream_id=row.stream_id, error=reason)
