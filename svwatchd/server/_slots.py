"""Decode slots: how many there are, and which running tasks hold them.

``maxactive`` counts slots, not streams: a file job (one or several short
files packed together) holds one, a live socket session holds one, and a
long file's job borrows the slots that are free for its pieces (given back
piece by piece, so new jobs get them as they come). Live
sessions may take up to ``maxactive`` slots; file jobs take every slot while
no session runs and all but one while any does, so a backlog of files never
starves live audio (a session mostly waits for its audio, so the two are
counted apart).

The scheduler starts file jobs and the live sessions start socket sessions;
both hand their task to the slots, which are the one record of what runs
(read by the scheduler, by ``/v1/status`` and by the metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

__all__ = ["Slots", "cancel_all"]


class Slots:
    """The decode slots in use: running file jobs and live socket sessions.

    ``maxactive`` is read at every decision (a parameter that may change);
    ``on_free`` is called whenever a task ends and gives its slot back.
    """

    def __init__(self, maxactive: Callable[[], int], on_free: Callable[[], None]) -> None:
        self._maxactive = maxactive
        self._on_free = on_free
        self._jobs: dict[asyncio.Task[None], frozenset[str]] = {}  # file job -> its stream ids
        self._extra: dict[asyncio.Task[None], int] = {}  # long-file job -> slots it borrowed
        self._live: dict[str, asyncio.Task[None]] = {}  # stream id -> its session

    @property
    def total(self) -> int:
        """Slots in all (``maxactive``, at least one)."""
        return max(1, self._maxactive())

    def busy(self) -> int:
        """Slots in use: file jobs plus live sessions."""
        return len(self._jobs) + sum(self._extra.values()) + len(self._live)

    def free_for_live(self) -> int:
        """How many more live sessions may start now."""
        return self.total - len(self._live)

    def free_for_files(self) -> int:
        """How many more file jobs may start now (one slot kept while a session runs)."""
        cap = self.total - 1 if self._live else self.total
        return cap - len(self._jobs) - sum(self._extra.values())

    def borrow(self, task: asyncio.Task[None]) -> bool:
        """A running file job takes one more slot if one is free (a long file's pieces
        spread over idle workers); False when none is."""
        if task not in self._jobs or self.free_for_files() <= 0:
            return False
        self._extra[task] = self._extra.get(task, 0) + 1
        return True

    def borrowed(self, task: asyncio.Task[None]) -> int:
        """Slots the job holds beyond its own."""
        return self._extra.get(task, 0)

    def give_back(self, task: asyncio.Task[None]) -> None:
        """Return one borrowed slot."""
        left = self._extra.get(task, 0) - 1
        if left > 0:
            self._extra[task] = left
        else:
            self._extra.pop(task, None)
        self._on_free()

    def hold_job(self, task: asyncio.Task[None], stream_ids: Iterable[str]) -> None:
        """A file job decoding ``stream_ids`` runs in ``task`` until it ends."""
        self._jobs[task] = frozenset(stream_ids)
        task.add_done_callback(self._job_ended)

    def hold_live(self, stream_id: str, task: asyncio.Task[None]) -> None:
        """A live session for ``stream_id`` runs in ``task`` until it ends."""
        self._live[stream_id] = task
        task.add_done_callback(lambda _: self._live_ended(stream_id, task))

    def in_job(self, stream_id: str) -> bool:
        """True while a running file job decodes the stream."""
        return any(stream_id in ids for ids in self._jobs.values())

    def session(self, stream_id: str) -> asyncio.Task[None] | None:
        """The live session of the stream, if one runs."""
        return self._live.get(stream_id)

    def jobs(self) -> list[asyncio.Task[None]]:
        """The running file jobs."""
        return list(self._jobs)

    def sessions(self) -> list[asyncio.Task[None]]:
        """The running live sessions."""
        return list(self._live.values())

    def _job_ended(self, task: asyncio.Task[None]) -> None:
        self._jobs.pop(task, None)
        self._extra.pop(task, None)
        self._on_free()

    def _live_ended(self, stream_id: str, task: asyncio.Task[None]) -> None:
        if self._live.get(stream_id) is task:
            del self._live[stream_id]
        self._on_free()


async def cancel_all(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until each has ended."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
