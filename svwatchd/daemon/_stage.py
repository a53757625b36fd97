"""What the daemon's stages share: the journal, the watches, how a file ends.

A file that cannot be transcribed -- refused by the server, a bad header,
retries exhausted -- gets ``<name>.error.json`` beside where its transcript
would be, a FAILED journal row with the reason, and one ``stream.error`` line;
the same whichever stage found the problem. A file that ends (DONE or
FAILED) owes its watch's notifications: they are recorded in the journal in
the transaction that records its end (`Stage.finished`,
`svwatchd.daemon._deliveries`), and delivered later, off the loop.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from svwatchd.client.stream import Stream
from svwatchd.daemon._collaborators import Log, Metrics, file_log
from svwatchd.daemon._deliveries import notice, notices
from svwatchd.daemon._journal import Extra, FileRecord, Journal
from svwatchd.daemon._outputnames import ERROR_FORMAT, MIX, language_for_name
from svwatchd.daemon._outputs import output_base, write_error
from svwatchd.daemon._watchconfig import WatchConfig
from svwatchd.daemon._watches import Watches

__all__ = [
    "Stage",
    "audio_facts",
    "error_path",
    "existing_outputs",
    "output_path",
    "output_record",
]


def output_path(
    watch: WatchConfig, source: str, fmt: str, lang: str | None, channel: str = MIX
) -> Path:
    """Where the ``fmt`` output of ``source`` goes: its folder mirrored under the watch's
    output folder (or beside it: ``output.dir: same``), named by ``output.name``."""
    folder = output_base(Path(source), watch.path, watch.output_dir).parent
    return folder / watch.output_name.render(source, fmt, lang, channel)


def error_path(watch: WatchConfig, row: FileRecord) -> Path:
    """Where the file saying why ``row`` failed goes (``{fmt}`` is ``error.json``)."""
    return output_path(watch, row.path, ERROR_FORMAT, language_for_name(row.metadata))


def existing_outputs(
    watch: WatchConfig, source: str, metadata: dict[str, object] | None
) -> list[Path] | None:
    """The outputs of ``source`` already there, when there is one for every format (None
    otherwise), for ``skip_if_exists``. Before decoding the language is known only from
    the tags: without one, ``{lang}`` matches any language code (``movie.en.srt`` counts),
    and ``{channel}`` any channel."""
    lang = language_for_name(metadata)
    found: list[Path] = []
    for fmt in watch.formats:
        path = output_path(watch, source, fmt, lang)
        name = watch.output_name
        if (lang is not None or "lang" not in name.fields) and not name.per_channel:
            if not path.is_file():
                return None
            found.append(path)
            continue
        pattern = name.pattern((fmt,), source, lang)  # one name per language or channel
        try:
            names = sorted(n for n in os.listdir(path.parent) if pattern.fullmatch(n))
        except OSError:
            return None
        if not names:
            return None
        found += [path.parent / n for n in names]
    return found


def _chain(*extras: Extra) -> Extra:
    def run(db: sqlite3.Connection) -> None:
        for extra in extras:
            extra(db)

    return run


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
        """Record that the file cannot be transcribed: error file, FAILED row (with the
        notifications it owes), one log line."""
        watch = self.watch_of(row)
        outputs: list[str] = []
        if watch is not None:
            path = error_path(watch, row)
            write_error(path, reason=reason, record=output_record(row), mode=watch.output_mode)
            outputs.append(str(path))
        doc = notice(
            row, "error", outputs=outputs, language=language_for_name(row.metadata), error=reason
        )
        owed = notices(watch.notify if watch else None, row, doc, now=time.time())
        self.journal.mark_failed(row.id, reason, extra=owed)
        self.metrics.failed(row.watch)
        file_log(self.log, row).error("stream.error", error=reason)

    def finished(
        self,
        row: FileRecord,
        watch: WatchConfig,
        outputs: Sequence[Path],
        *,
        duration: float | None = None,
        language: str | None = None,
        skipped: bool = False,
    ) -> bool:
        """Record, AFTER its outputs are durably written, that the file is DONE: its row, the
        outputs it claims and the notifications it owes, in one transaction; a stale error
        file from an earlier attempt is removed. False when the row could not move."""
        paths = [str(p) for p in outputs]
        doc = notice(
            row, "done", outputs=paths, duration=duration, language=language, skipped=skipped
        )
        owed = notices(watch.notify, row, doc, now=time.time())
        claims = self.journal.claim_outputs(paths, row.id, row.path)
        done = self.journal.mark_done(row.id, extra=_chain(claims, owed))
        if done:
            error_path(watch, row).unlink(missing_ok=True)
        return done
