"""What the daemon's stages share: the journal, the watches, and how a file fails.

A file that cannot be transcribed -- refused by the server, a bad header,
retries exhausted -- gets ``<name>.error.json`` beside where its transcript
would be, a FAILED journal row with the reason, and one ``stream.error`` line;
the same whichever stage found the problem.
"""

from __future__ import annotations

from pathlib import Path

from svwatchd.client.stream import Stream
from svwatchd.daemon._collaborators import Log, Metrics, file_log
from svwatchd.daemon._journal import FileRecord, Journal
from svwatchd.daemon._outputs import output_base, write_error
from svwatchd.daemon._watchconfig import WatchConfig
from svwatchd.daemon._watches import Watches

__all__ = [
    "Stage",
    "audio_facts",
    "output_record",
]


def output_record(row: FileRecord) -> dict[str, object]:
    """What every output JSON records about its source (enough to rebuild the journal)."""
    return {
        "source_path": row.path,
        "fingerprint": row.fingerprint,
        "stream_id": row.stream_id,
        "watch": row.watch,
        "metadata": row.metadata or {},
    }


_AUDIO_FACTS = (
    "track",
    "track_language",
    "channels_decoded",
    "channels_repeated",
    "language",
    "language_probability",
    "language_mismatch",
    "language_mismatch_probability",
    "task",
)


def audio_facts(stream: Stream) -> dict[str, object]:
    """What the output JSON records of how the audio was read and heard: the file type, the
    container track and channels decoded apart when there were any, the language heard
    (with a detection's probability), a foreign-speech mismatch, and the task."""
    facts: dict[str, object] = {"filetype": stream.getfiletype()}
    stats = stream.stats()
    for key in _AUDIO_FACTS:
        if stats.get(key) is not None:
            facts[key] = stats[key]
    return facts


class Stage:
    """Base of the submitter and the collector: their collaborators, all the loop's."""

    def __init__(self, journal: Journal, watches: Watches, log: Log, metrics: Metrics) -> None:
        self.journal = journal
        self.watches = watches
        self.log = log
        self.metrics = metrics

    def watch_of(self, row: FileRecord) -> WatchConfig | None:
        """The watch a row belongs to (None once a reload removed it)."""
        return self.watches.get(row.watch)

    def fail(self, row: FileRecord, reason: str) -> None:
        """Record that the file cannot be transcribed: error file, FAILED row, one log line."""
        watch = self.watch_of(row)
        if watch is not None:
            base = output_base(Path(row.path), watch.path, watch.output_dir)
            write_error(base, reason=reason, record=output_record(row))
        self.journal.mark_failed(row.id, reason)
        self.metrics.failed(row.watch)
        file_log(self.log, row).error("stream.error", error=reason)
