"""From a path on disk to a PENDING journal row: discovery, settling, identity.

Three ways in, one way through: watch events, the startup scan, and the
periodic rescan all feed the ``Settler``; a settled file is hashed
(``identify``) and recorded with ``Journal.upsert_seen_batch`` -- a touched
file whose content is unchanged is recognised and never decoded again.

Every change, settler entry and queued folder carries its watch's `WatchId`,
and a file is recorded only under the watch that contains it: after a reload
that removed a watch, what was still on its way is dropped (`forget`); a
scan of any watch that now holds those files finds them again.

A rescan that finds files no event announced logs ``watch.overflow``: watchdog
drops inotify's queue overflow silently, so this is how a lost event shows.

A file that cannot be recorded for a reason of its own (a name that is not
UTF-8, a bug) is reported once (`svwatchd.daemon._isolation`) and left out
until it changes; the others of its slice are recorded all the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from svwatchd.daemon._collaborators import Log, Metrics
from svwatchd.daemon._identity import FileIdentity, identify, stream_id_for
from svwatchd.daemon._isolation import WHOLE_STEP, Isolation
from svwatchd.daemon._journal import FileRecord, Journal
from svwatchd.daemon._settle import Settler, Stat
from svwatchd.daemon._watchconfig import WatchConfig, WatchId
from svwatchd.daemon._watcher import Change
from svwatchd.daemon._watches import Watches
from svwatchd.errors import FileChangedError

__all__ = ["Ingest"]

_DIR_SCANS_PER_TICK = 64


class Ingest:
    """Turns changes and scans into journal rows; one instance per daemon, the loop's."""

    def __init__(
        self,
        journal: Journal,
        watches: Watches,
        log: Log,
        metrics: Metrics,
        *,
        metadata_complete: set[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.watches = watches
        self.log = log
        self.metrics = metrics
        self.settler = Settler(clock)
        self._announced: set[str] = set()
        self._dirs: list[tuple[WatchId, str]] = []
        self.metadata_changed: set[WatchId] = set()  # watches whose metadata files changed
        self.metadata_complete = metadata_complete  # metadata files closed or moved in
        self._young: dict[str, float] = {}  # folders that appeared -> their last new entry
        self._skipped: set[str] = set()  # files the watches do not take, reported once
        self._left_out: dict[str, Stat | None] = {}  # files that could not be recorded, as were
        self._errors = Isolation("ingest", metrics)
        self._clock = clock

    def forget(self, removed: set[WatchId]) -> None:
        """A reload removed these watches: drop their settling files and queued folders."""
        self.settler.forget(removed)
        self._dirs = [(w, d) for w, d in self._dirs if w not in removed]
        self.metadata_changed -= removed

    # -- discovery ------------------------------------------------------------------

    def take(self, changes: Sequence[Change]) -> None:
        """Feed watch events to the settler (directories are queued for a scan)."""
        for ch in changes:
            watch = self.watches.get(ch.watch)
            if watch is None:
                continue  # from a watch a reload removed
            now = self._clock()
            if ch.hint is None:
                self._dirs.append((watch.id, ch.path))
                self._young[ch.path] = now
                continue
            parent = os.path.dirname(ch.path)
            for young in [d for d in self._young if parent == d or parent.startswith(d + "/")]:
                self._young[young] = now  # a new entry: the folder is still being filled
            if ch.metadata:
                self.metadata_changed.add(watch.id)
                if ch.hint in ("closed", "moved"):
                    self.metadata_complete.add(ch.path)
                elif ch.hint in ("changed", "deleted"):
                    self.metadata_complete.discard(ch.path)
                continue
            if ch.skipped is not None:
                self._skip(ch.path, ch.skipped)
                continue
            if ch.hint == "deleted":
                self._left_out.pop(ch.path, None)
                self._skipped.discard(ch.path)
            self._announced.add(ch.path)
            self.settler.note(ch.path, watch.id, ch.hint, watch.settle)

    def scan(self, watch: WatchConfig, root: str | None = None, *, rescan: bool) -> int:
        """Walk one watch (or a folder in it); note every file the journal does not know.

        Returns how many unknown files were found. On a periodic rescan, files
        that no event announced are counted and reported as a likely overflow.
        """
        top = root or str(watch.path)
        known = self.journal.known_paths(watch.id)
        missed: list[str] = []
        now = time.time()
        for path, skipped in watch.selector.walk_all(top, recursive=watch.recursive):
            if not watch.contains(path) or path in known or path in self.settler:
                continue
            if skipped is not None:
                self._skip(path, skipped)
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if self._left_out.get(path) == (st.st_size, st.st_mtime_ns):
                continue  # reported already; tried again once it changes
            if rescan and path not in self._announced:
                missed.append(path)
            self.settler.note(path, watch.id, "scanned", watch.settle, age=now - st.st_mtime)
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

    def _skip(self, path: str, reason: str) -> None:
        """A file the watch does not take: say so once, so an operator is not left guessing."""
        if path not in self._skipped:
            self._skipped.add(path)
            self.log.info("file.ignored", path=path, reason=reason)

    def forget_quiet_folders(self) -> None:
        """Drop folders that have been quiet long enough (keeps the set small)."""
        now = self._clock()
        longest = max((w.settle for w in self.watches), default=0.0)
        self._young = {d: t for d, t in self._young.items() if now - t < 2 * longest + 1}

    def rescan_all(self) -> None:
        """The periodic backstop: scan every watch, then forget the announced set."""
        for watch in self.watches:
            self.scan(watch, rescan=True)
        self._announced = {p for p in self._announced if p in self.settler}

    # -- settling and identity -----------------------------------------------------------

    def step(self, limit: int | None = None) -> int:
        """Scan queued folders, then record settled files (``limit`` at most: the rest wait
        for the next step, so a burst is recorded and submitted in slices, not all at
        once); returns how many were recorded."""
        for _ in range(min(len(self._dirs), _DIR_SCANS_PER_TICK)):
            wid, folder = self._dirs.pop(0)
            watch = self.watches.get(wid)
            if watch is not None:
                self.scan(watch, folder, rescan=False)
        now = self._clock()
        due: list[tuple[WatchConfig, str]] = []
        for wid, path in self.settler.due(limit):
            watch = self.watches.owner(wid, path)
            if watch is None:
                continue  # its watch was removed (or no longer holds it): a scan finds it
            if self._young and any(
                now - last < watch.settle and path.startswith(d + "/")
                for d, last in self._young.items()
            ):
                # a folder being copied in (cp -r): its metadata file may still come
                self.settler.retry_later(path, wid, watch.settle)
                continue
            due.append((watch, path))
        if not due:
            return 0
        try:
            return self._record(due)
        except BaseException:
            # e.g. the journal's disk is full: nothing was recorded, so nothing may be
            # forgotten either -- every file of the slice goes back to wait its turn
            for watch, path in due:
                self.settler.retry_later(path, watch.id, watch.settle)
            raise

    def has_due(self) -> bool:
        """True when settled files (or queued folders) wait for the next `step`."""
        return bool(self._dirs) or self.settler.has_due()

    def _record(self, due: list[tuple[WatchConfig, str]]) -> int:
        try:
            return self._record_slice(due)
        except WHOLE_STEP:
            raise
        except Exception:  # one file spoils the slice's queries: record them one by one
            return sum(self._record_alone(watch, path) for watch, path in due)

    def _record_alone(self, watch: WatchConfig, path: str) -> int:
        try:
            return self._record_slice([(watch, path)])
        except WHOLE_STEP:
            raise
        except Exception as exc:
            self._leave_out(path, _stat(path), exc)
            return 0

    def _record_slice(self, due: list[tuple[WatchConfig, str]]) -> int:
        """Hash the files and record them in one transaction; returns how many are new."""
        latest = self.journal.latest_many(p for _, p in due)
        found: list[tuple[FileIdentity, WatchId]] = []
        for watch, path in due:
            ident = self._identify(watch, path, latest.get(path))
            if ident is not None:
                found.append((ident, watch.id))
        if not found:
            return 0
        news = self.journal.upsert_seen_batch(found)
        recorded = 0
        for (ident, wid), new in zip(found, news, strict=True):
            if self._left_out:
                self._left_out.pop(ident.path, None)  # recorded at last (it changed)
                self._errors.cleared(ident.path)
            if not new:
                continue
            recorded += 1
            self.log.info(
                "file.detected",
                path=ident.path,
                stream_id=stream_id_for(ident.path, ident.fingerprint),
                size=ident.size,
                fingerprint=ident.fingerprint,
            )
            self.metrics.detected(wid)
        return recorded

    def _leave_out(self, path: str, stat: Stat | None, exc: Exception) -> None:
        """This file cannot be recorded: report it once, skip it until it changes (``stat``:
        as it was; None: unknown, so rescans try it again, still reporting it once)."""
        self._errors.failed(path, exc, self.log.bind(path=path))
        self._left_out[path] = stat

    def _identify(
        self, watch: WatchConfig, path: str, latest: FileRecord | None
    ) -> FileIdentity | None:
        """Hash a settled file, unless its stat shows it is the version ``latest`` recorded."""
        try:
            if latest is not None and latest.identity.same_stat(os.stat(path)):
                return None  # nothing changed since we hashed it
            return identify(path)
        except FileChangedError:
            self.settler.retry_later(path, watch.id, watch.settle)
        except FileNotFoundError:
            pass  # gone before it was hashed: nothing to do (its deletion was an event too)
        except OSError as exc:
            self.log.warning("file.unreadable", path=path, error=exc.strerror or str(exc))
        except Exception as exc:  # this file's problem: the others of the slice go on
            self._leave_out(path, _stat(path), exc)
        return None


def _stat(path: str) -> Stat | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_size, st.st_mtime_ns
