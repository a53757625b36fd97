"""Watching folders with watchdog: file events become ``Change`` items on a queue.

One observer per watch (inotify, or polling for network mounts), keyed by the
watch's `WatchId` (its root path): a reload that reorders the watches touches
no observer, and one that changes a watch restarts only that one. Events are
filtered by the watch's ``FileSelector`` -- the same rules as
``createdirstreams`` -- by its excluded folders (outputs inside a watch) and
by the names of the outputs it writes beside its sources (``output.dir: same``).
A directory that appears (created or moved in) is queued too, so the daemon
scans it: files moved in inside a directory raise no events of their own.

inotify's queue overflow cannot be observed through watchdog (it drops the
event); the periodic rescan is the backstop. The watch limit does surface, as
``OSError(ENOSPC)`` when a watch is added: it is reported with its remedy and
that watch falls back to polling rather than leaving a silent gap.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from svwatchd.daemon._settle import Hint
from svwatchd.daemon._watchconfig import WatchId
from svwatchd.model.select import FileSelector

__all__ = [
    "EVENTS",
    "Change",
    "WatchSpec",
    "Watcher",
]


@dataclass(frozen=True)
class WatchSpec:
    """What the watcher needs of a watch: where, how deep, which files, what to skip."""

    id: WatchId
    root: Path
    recursive: bool
    selector: FileSelector
    poll: bool = False
    excluded: tuple[Path, ...] = ()
    metadata_file: str | None = None
    own_output: Callable[[str], bool] | None = None  # names it writes beside its sources

    def skips(self, path: Path) -> bool:
        """True for paths the watch never looks at: its excluded folders, its own outputs."""
        if self.own_output is not None and self.own_output(path.name):
            return True
        return any(path == x or x in path.parents for x in self.excluded)


@dataclass(frozen=True)
class Change:
    """Something happened to ``path`` in watch ``watch``: a file (``hint``) or a new directory."""

    watch: WatchId
    path: str
    hint: Hint | None  # None: a directory appeared; scan it
    metadata: bool = False  # the path is a per-directory metadata file
    skipped: str | None = None  # the watch does not take this file: why (its extension...)


class _Handler(FileSystemEventHandler):
    def __init__(self, spec: WatchSpec, sink: Callable[[Change], None]) -> None:
        self.spec = spec
        self.sink = sink

    def _wanted(self, path: str) -> Change | None:
        spec = self.spec
        p = Path(path)
        if spec.skips(p):
            return None
        if spec.metadata_file is not None and p.name == spec.metadata_file:
            return Change(spec.id, path, "changed", metadata=True)
        if not spec.selector.matches(path, str(spec.root)):
            return None
        return Change(spec.id, path, "changed")

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        if isinstance(event, DirCreatedEvent | DirMovedEvent):
            dest = os.fsdecode(event.dest_path) if isinstance(event, DirMovedEvent) else src
            if not self.spec.selector.is_ignored(os.path.relpath(dest, self.spec.root)):
                self.sink(Change(self.spec.id, dest, None))
            return
        hint: Hint
        path = src
        if isinstance(event, FileMovedEvent):
            self._emit(src, "deleted")
            path, hint = os.fsdecode(event.dest_path), "moved"
        elif isinstance(event, FileClosedEvent):
            hint = "closed"
        elif isinstance(event, FileDeletedEvent):
            hint = "deleted"
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent):
            hint = "changed"
        else:
            return
        self._emit(path, hint)

    def _emit(self, path: str, hint: Hint) -> None:
        change = self._wanted(path)
        if change is not None:
            self.sink(Change(change.watch, path, hint, change.metadata))
        elif hint in ("closed", "moved"):  # a complete file the watch does not take: say why
            reason = self._skipped(path)
            if reason is not None:
                self.sink(Change(self.spec.id, path, hint, skipped=reason))

    def _skipped(self, path: str) -> str | None:
        spec = self.spec
        if spec.skips(Path(path)):
            return None
        if spec.selector.is_ignored(os.path.relpath(path, spec.root)):
            return None
        return spec.selector.skip_reason(path)


# The events the daemon acts on. The filter also narrows the inotify mask: no
# IN_OPEN / IN_CLOSE_NOWRITE, so the daemon's own hashing and the server's
# reads of a file raise no events for the daemon to sift through.
EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
]


class Watcher:
    """Observers for a set of watches, feeding one thread-safe queue of Changes."""

    def __init__(
        self,
        on_warning: Callable[..., None] | None = None,
        *,
        inotify: Callable[[], BaseObserver] = Observer,
    ) -> None:
        self.changes: queue.SimpleQueue[Change] = queue.SimpleQueue()
        self.wakeup = threading.Event()  # set on every change: the daemon's loop waits on it
        self._observers: dict[WatchId, tuple[WatchSpec, BaseObserver]] = {}
        self._warn = on_warning or (lambda *a, **k: None)
        self._inotify = inotify

    def add(self, spec: WatchSpec) -> None:
        """Start watching one watch; falls back to polling when inotify is out of watches."""
        handler = _Handler(spec, self._put)
        observer: BaseObserver = PollingObserver(timeout=1.0) if spec.poll else self._inotify()
        try:
            observer.schedule(
                handler, str(spec.root), recursive=spec.recursive, event_filter=EVENTS
            )
            observer.start()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EMFILE):
                raise
            self._warn(
                "watch.limit",
                path=str(spec.root),
                error=str(exc),
                remedy="raise fs.inotify.max_user_watches (sysctl -w "
                "fs.inotify.max_user_watches=524288) or max_user_instances; "
                "polling this watch meanwhile",
            )
            observer = PollingObserver(timeout=1.0)
            observer.schedule(
                handler, str(spec.root), recursive=spec.recursive, event_filter=EVENTS
            )
            observer.start()
        self._observers[spec.id] = (spec, observer)

    def _put(self, change: Change) -> None:
        self.changes.put(change)
        self.wakeup.set()

    def remove(self, watch: WatchId) -> None:
        """Stop watching one watch."""
        entry = self._observers.pop(watch, None)
        if entry is not None:
            entry[1].stop()
            entry[1].join(5)

    def update(self, specs: Sequence[WatchSpec]) -> list[WatchSpec]:
        """Watch exactly ``specs``: observers of unchanged watches keep running (no event
        is missed), removed or changed ones stop, new or changed ones start. Returns the
        specs started, whose folders the caller scans (events before the start are lost)."""
        wanted = {spec.id: spec for spec in specs}
        for watch, (spec, _) in list(self._observers.items()):
            if wanted.get(watch) != spec:
                self.remove(watch)
        started = [spec for spec in specs if spec.id not in self._observers]
        for spec in started:
            self.add(spec)
        return started

    def stop(self) -> None:
        """Stop every observer."""
        for watch in list(self._observers):
            self.remove(watch)

    def drain(self, limit: int = 100_000) -> list[Change]:
        """Take the queued changes (at most ``limit``)."""
        out: list[Change] = []
        while len(out) < limit:
            try:
                out.append(self.changes.get_nowait())
            except queue.Empty:
                break
        return out
