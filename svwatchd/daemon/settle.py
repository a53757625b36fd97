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

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Hint", "Settler"]

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
    watch: int
    settle: float
    ready_at: float
    stat: Stat | None
    trusted: bool  # moved in, or closed once: no need to watch the stat
    last_close: float | None = None


class Settler:
    """Tracks candidate files until they are complete; ``due()`` hands them out once each."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._closes: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def note(self, path: str, watch: int, hint: Hint, settle: float, *, age: float = 0.0) -> None:
        """Record an event (or a scan's find) for ``path`` in watch number ``watch``.

        ``age``: for a scanned file, how long ago it was last modified; a file
        unchanged for ``settle`` already is complete at once.
        """
        now = self._clock()
        if hint == "deleted":
            self._entries.pop(path, None)
            return
        last_close = self._closes.get(path)
        if hint == "moved":
            trusted, ready_at = True, now
        elif hint == "closed":
            reopened = last_close is not None and now - last_close < settle
            self._closes[path] = now
            trusted, ready_at = not reopened, now + settle if reopened else now
        elif hint == "scanned":
            trusted, ready_at = False, now + max(0.0, settle - max(0.0, age))
        else:
            trusted, ready_at = False, now + settle
        self._entries[path] = _Entry(watch, settle, ready_at, _stat(path), trusted, last_close)

    def due(self) -> list[tuple[int, str]]:
        """Files complete now, as (watch, path); each is handed out once."""
        now = self._clock()
        out: list[tuple[int, str]] = []
        for path, entry in list(self._entries.items()):
            if entry.ready_at > now:
                continue
            stat = _stat(path)
            if stat is None:
                del self._entries[path]  # gone before it settled
                continue
            if not entry.trusted and stat != entry.stat:
                entry.stat, entry.ready_at = stat, now + entry.settle
                continue
            del self._entries[path]
            out.append((entry.watch, path))
        for path, when in list(self._closes.items()):
            if now - when > 3600:
                del self._closes[path]
        return out

    def retry_later(self, path: str, watch: int, settle: float) -> None:
        """The file changed while it was being hashed: wait ``settle`` again."""
        now = self._clock()
        self._entries[path] = _Entry(watch, settle, now + settle, _stat(path), False)
