"""One file a step cannot handle never stops the step for the others.

The daemon's steps handle their files one at a time. An unexpected exception
while preparing, building or collecting one file (a bug, a file no rule
foresaw) is that file's problem: the step catches it for that file, reports
it through `Isolation.failed` -- counted once in
``svwatchd_files_isolated_total{step}`` and logged once, as
``file.step_failed`` with the traceback, per file and problem -- decides what
becomes of the file (held, failed, tried again later; each step says which)
and goes on with the next. Conditions of the whole step are not a file's:
`WHOLE_STEP` errors (svserver unreachable, the journal's disk full) pass
through to the loop, which backs off and tries the step again.

`Once` is the "log it once" memory behind this, also used for the other
lines that must not repeat at every turn (``output.failed``,
``metadata.invalid``).
"""

from __future__ import annotations

from collections.abc import Hashable

from svwatchd.daemon._collaborators import Log, Metrics
from svwatchd.errors import JournalWriteError, ServerUnavailableError

__all__ = ["WHOLE_STEP", "Isolation", "Once"]

WHOLE_STEP: tuple[type[Exception], ...] = (JournalWriteError, ServerUnavailableError)


class Once:
    """Which problem was last reported for each key, so that each is reported once."""

    def __init__(self) -> None:
        self._last: dict[Hashable, str] = {}

    def first(self, key: Hashable, problem: str) -> bool:
        """True when ``problem`` is new for ``key`` (report it); False when it was reported."""
        if self._last.get(key) == problem:
            return False
        self._last[key] = problem
        return True

    def clear(self, key: Hashable) -> None:
        """``key`` is fine again: a later problem is reported anew."""
        self._last.pop(key, None)


class Isolation:
    """Counts and logs, once per file and problem, the files one step could not handle."""

    def __init__(self, step: str, metrics: Metrics) -> None:
        self.step = step
        self._metrics = metrics
        self._once = Once()

    def failed(self, key: Hashable, exc: Exception, log: Log) -> str:
        """Report that the file ``key`` (a path or a stream id) failed this step with
        ``exc``; ``log`` has the file bound. Returns the problem as one line, the reason
        to record with the file."""
        problem = f"{type(exc).__name__}: {exc}"
        if self._once.first(key, problem):
            self._metrics.isolated(self.step)
            log.error("file.step_failed", step=self.step, error=problem, exc_info=exc)
        return problem

    def cleared(self, key: Hashable) -> None:
        """The file went through this step: a later problem with it is reported anew."""
        self._once.clear(key)
