"""One wake-up for everything in svserver that waits on the streams' state.

The scheduler waits for work (a stream queued, a slot freed, a parameter
set) and listeners wait for new utterances or a finished stream. Whoever
changes that state says so once, :meth:`Changes.changed`, and both wake; the
lifecycle does it after every committed transition. Plain ``asyncio.Event``
objects, set from synchronous code on the event loop: nothing to schedule,
no lock to take.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Changes", "wait"]


class Changes:
    """Wakes the scheduler and the listeners when the streams' state changed."""

    def __init__(self) -> None:
        self._work = asyncio.Event()  # the scheduler's: set until it looks
        self._next = asyncio.Event()  # the listeners': set at the next change, then replaced

    def changed(self) -> None:
        """Streams changed: wake the scheduler and every listener (callable from sync code)."""
        self._work.set()
        current, self._next = self._next, asyncio.Event()
        current.set()

    def next_change(self) -> asyncio.Event:
        """An event set at the next change. Take it *before* reading the state, then wait
        on it: a change between the read and the wait is not missed."""
        return self._next

    async def wait_for_work(self, timeout: float) -> None:
        """The scheduler's wait: until something changed since it last looked, or ``timeout``."""
        await wait(self._work, timeout)
        self._work.clear()


async def wait(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds pass.

    ``asyncio.timeout``, not ``wait_for``: on 3.11 ``wait_for`` swallows a cancel
    that arrives as the event is set (a live session ending at shutdown), and the
    loop never stopped.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
