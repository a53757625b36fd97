"""From a path on disk to a PENDING journal row: discovery, settling, identity.

Three ways in, one way through: watch events, the startup scan, and the
periodic rescan all feed the ``Settler``; a settled file is hashed
(``identify``) and recorded with ``Journal.upsert_seen`` -- a touched file
whose content is unchanged is recognised and never decoded again.

A rescan that finds files no event announced logs ``watch.overflow``: watchdog
drops inotify's queue overflow silently, so this is how a lost event shows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from svwatchd.daemon.config import WatchConfig
from svwatchd.daemon.identity import FileIdentity, identify, stream_id_for
from svwatchd.daemon.journal import FileRecord, Journal
from svwatchd.daemon.settle import Settler
from svwatchd.daemon.watcher import Change
from svwatchd.errors import FileChangedError

__all__ = ["Ingest"]

_DIR_SCANS_PER_TICK = 64


class Ingest:
    """Turns changes and scans into journal rows; one instance per daemon."""

    def __init__(
        self,
        journal: Journal,
        watches: Sequence[WatchConfig],
        log: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_detected: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.journal = journal
        self.watches = list(watches)
        self.log = log
        self.settler = Settler(clock)
        self._announced: set[str] = set()
        self._dirs: list[tuple[int, str]] = []
        self._on_detected = on_detected or (lambda w, p, sid: None)
        self.metadata_changed: set[int] = set()  # watches whose metadata files changed
        self.metadata_complete: set[str] = set()  # metadata files closed or moved in
        self._young: dict[str, float] = {}  # folders that appeared -> their last new entry
        self._clock = clock

    def set_watches(self, watches: Sequence[WatchConfig]) -> None:
        """A reload changed the watches (indexes follow the new list)."""
        self.watches = list(watches)

    # -- discovery ------------------------------------------------------------------

    def take(self, changes: Sequence[Change]) -> None:
        """Feed watch events to the settler (directories are queued for a scan)."""
        for ch in changes:
            if ch.watch >= len(self.watches):
                continue
            now = self._clock()
            if ch.hint is None:
                self._dirs.append((ch.watch, ch.path))
                self._young[ch.path] = now
                continue
            parent = os.path.dirname(ch.path)
            for young in [d for d in self._young if parent == d or parent.startswith(d + "/")]:
                self._young[young] = now  # a new entry: the folder is still being filled
            if ch.metadata:
                self.metadata_changed.add(ch.watch)
                if ch.hint in ("closed", "moved"):
                    self.metadata_complete.add(ch.path)
                elif ch.hint in ("changed", "deleted"):
                    self.metadata_complete.discard(ch.path)
                continue
            self._announced.add(ch.path)
            self.settler.note(ch.path, ch.watch, ch.hint, self.watches[ch.watch].settle)

    def scan(self, index: int, root: str | None = None, *, rescan: bool) -> int:
        """Walk one watch (or a folder in it); note every file the journal does not know.

        Returns how many unknown files were found. On a periodic rescan, files
        that no event announced are counted and reported as a likely overflow.
        """
        watch = self.watches[index]
        top = root or str(watch.path)
        known = self.journal.known_paths(str(watch.path))
        missed: list[str] = []
        now = time.time()
        for path in watch.selector.walk(top, recursive=watch.recursive):
            if _excluded(path, watch) or path in known or path in self.settler:
                continue
            try:
                age = now - os.stat(path).st_mtime
            except OSError:
                continue
            if rescan and path not in self._announced:
                missed.append(path)
            self.settler.note(path, index, "scanned", watch.settle, age=age)
        if missed:
            self.log.warning(
                "watch.overflow",
                path=str(watch.path),
                count=len(missed),
                examples=missed[:3],
                remedy="events were lost (inotify queue overflow?): raise "
                "fs.inotify.max_queued_events and fs.inotify.max_user_watches; "
                "the files are being ingested now",
            )
        return len(missed)

    def forget_quiet_folders(self) -> None:
        """Drop folders that have been quiet long enough (keeps the set small)."""
        now = self._clock()
        longest = max((w.settle for w in self.watches), default=0.0)
        self._young = {d: t for d, t in self._young.items() if now - t < 2 * longest + 1}

    def rescan_all(self) -> None:
        """The periodic backstop: scan every watch, then forget the announced set."""
        for index in range(len(self.watches)):
            self.scan(index, rescan=True)
        self._announced = {p for p in self._announced if p in self.settler}

    # -- settling and identity -----------------------------------------------------------

    def step(self, limit: int | None = None) -> int:
        """Scan queued folders, then record settled files (``limit`` at most: the rest wait
        for the next step, so a burst is recorded and submitted in slices, not all at
        once); returns how many were recorded."""
        for _ in range(min(len(self._dirs), _DIR_SCANS_PER_TICK)):
            index, folder = self._dirs.pop(0)
            if index < len(self.watches):
                self.scan(index, folder, rescan=False)
        now = self._clock()
        due: list[tuple[int, str]] = []
        for index, path in self.settler.due(limit):
            if index >= len(self.watches):
                continue
            watch = self.watches[index]
            if self._young and any(
                now - last < watch.settle and path.startswith(d + "/")
                for d, last in self._young.items()
            ):
                # a folder being copied in (cp -r): its metadata file may still come
                self.settler.retry_later(path, index, watch.settle)
                continue
            due.append((index, path))
        if not due:
            return 0
        try:
            return self._record(due)
        except BaseException:
            # e.g. the journal's disk is full: nothing was recorded, so nothing may be
            # forgotten either -- every file of the slice goes back to wait its turn
            for index, path in due:
                self.settler.retry_later(path, index, self.watches[index].settle)
            raise

    def _record(self, due: list[tuple[int, str]]) -> int:
        latest = self.journal.latest_many(p for _, p in due)
        found: list[tuple[FileIdentity, str]] = []
        for index, path in due:
            watch = self.watches[index]
            ident = self._identify(watch, index, path, latest.get(path))
            if ident is not None:
                found.append((ident, str(watch.path)))
        if not found:
            return 0
        recorded = 0
        for ident, watch_path, new in self.journal.upsert_seen_batch(found):
            if not new:
                continue
            recorded += 1
            self.log.info(
                "file.detected",
                path=ident.path,
                stream_id=stream_id_for(watch_path, ident.path, ident.fingerprint),
                size=ident.size,
                fingerprint=ident.fingerprint,
            )
            self._on_detected(watch_path, ident.path, ident.fingerprint)
        return recorded

    def has_due(self) -> bool:
        """True when settled files (or queued folders) wait for the next `step`."""
        return bool(self._dirs) or self.settler.has_due()

    def _identify(
        self, watch: WatchConfig, index: int, path: str, latest: FileRecord | None
    ) -> FileIdentity | None:
        """Hash a settled file, unless its stat shows it is the version ``latest`` recorded."""
        try:
            if latest is not None and latest.identity.same_stat(os.stat(path)):
                return None  # nothing changed since we hashed it
            return identify(path)
        except FileChangedError:
            self.settler.retry_later(path, index, watch.settle)
        except FileNotFoundError:
            pass  # gone before it was hashed: nothing to do (its deletion was an event too)
        except OSError as exc:
            self.log.warning("file.unreadable", path=path, error=exc.strerror or str(exc))
        return None


def _excluded(path: str, watch: WatchConfig) -> bool:
    p = Path(path)
    if p.name == watch.metadata_file:
        return True
    return any(p == x or x in p.parents for x in watch.excluded_dirs)
