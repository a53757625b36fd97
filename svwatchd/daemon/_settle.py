"""When a file is complete enough to submit: the settle rules, with an injectable clock.

- A file moved into a watch (the atomic-rename pattern) is complete at once.
- A file closed after writing is complete at once, unless the same path was
  closed within ``settle`` before (a writer that reopens it): then it waits.
- Any other file (created or modified without a close, or found by a scan)
  is complete once its size and mtime have not changed for ``settle``.

The daemon checks size and mtime once more while hashing, just before
submission; a change there sends the file back here.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from svwatchd.daemon._watchconfig import WatchId

__all__ = [
    "Hint",
    "Settler",
    "Stat",
]

Hint = Literal["moved", "closed", "changed", "scanned", "deleted"]
Stat = tuple[int, int]  # size, mtime_ns


def _stat(path: str) -> Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


@dataclass
class _Entry:
    watch: WatchId
    settle: float
    ready_at: float
    stat: Stat | None  # None for trusted entries: their stat is not watched
    trusted: bool  # moved in, or closed once: no need to watch the stat
    seq: int  # which heap item is this entry's current one (older items are stale)


class Settler:
    """Tracks candidate files until they are complete; ``due()`` hands them out once each.

    Entries wait in a heap ordered by when they may be complete, so a step costs
    what it hands out, not what is waiting (a 10k burst of files still being
    written is not re-examined every tick).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._closes: dict[str, float] = {}
        self._pruned = clock()

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def _put(
        self,
        path: str,
        watch: WatchId,
        settle: float,
        ready_at: float,
        trusted: bool,
        stat: Stat | None = None,
    ) -> None:
        """(Re)place the entry of ``path``; ``stat``: already taken (else taken here)."""
        self._seq += 1
        if stat is None and not trusted:
            stat = _stat(path)
        self._entries[path] = _Entry(watch, settle, ready_at, stat, trusted, self._seq)
        heapq.heappush(self._heap, (ready_at, self._seq, path))

    def note(
        self, path: str, watch: WatchId, hint: Hint, settle: float, *, age: float = 0.0
    ) -> None:
        """Record an event (or a scan's find) for ``path`` in watch ``watch``.

        ``age``: for a scanned file, how long ago it was last modified; a file
        unchanged for ``settle`` already is complete at once.
        """
        now = self._clock()
        if hint == "deleted":
            self._entries.pop(path, None)
            return
        if hint == "moved":
            self._put(path, watch, settle, now, trusted=True)
        elif hint == "closed":
            last_close = self._closes.get(path)
            reopened = last_close is not None and now - last_close < settle
            self._closes[path] = now
            self._put(path, watch, settle, now + settle if reopened else now, not reopened)
        elif hint == "scanned":
            self._put(path, watch, settle, now + max(0.0, settle - max(0.0, age)), False)
        else:
            self._put(path, watch, settle, now + settle, trusted=False)

    def due(self, limit: int | None = None) -> list[tuple[WatchId, str]]:
        """Files complete now, as (watch, path), ``limit`` at most; each is handed out once."""
        now = self._clock()
        out: list[tuple[WatchId, str]] = []
        heap = self._heap
        while heap and heap[0][0] <= now and (limit is None or len(out) < limit):
            _, seq, path = heapq.heappop(heap)
            entry = self._entries.get(path)
            if entry is None or entry.seq != seq:
                continue  # superseded by a later event for the same path
            if not entry.trusted:
                stat = _stat(path)
                if stat is None:
                    del self._entries[path]  # gone before it settled
                    continue
                if stat != entry.stat:  # still changing: wait settle again from now
                    self._put(path, entry.watch, entry.settle, now + entry.settle, False, stat)
                    continue
            del self._entries[path]
            out.append((entry.watch, path))
        if now - self._pruned > 60:
            self._pruned = now
            self._closes = {p: t for p, t in self._closes.items() if now - t <= 3600}
        return out

    def has_due(self) -> bool:
        """True when ``due()`` may hand something out now (a slice was left for later)."""
        return bool(self._heap) and self._heap[0][0] <= self._clock()

    def retry_later(self, path: str, watch: WatchId, settle: float) -> None:
        """The file changed while it was being hashed: wait ``settle`` again."""
        self._put(path, watch, settle, self._clock() + settle, trusted=False)

    def forget(self, watches: set[WatchId]) -> None:
        """Drop the entries of these watches (a reload removed them); their stale heap
        items are skipped when they come up."""
        if watches:
            self._entries = {p: e for p, e in self._entries.items() if e.watch not in watches}
