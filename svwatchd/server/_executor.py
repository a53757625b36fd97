"""The seam between svserver and whatever decodes: submit clips, get utterances back.

The worker pool (:class:`svwatchd.server._engines.WorkerPool`) fills it on one
machine; another executor (Ray actors across machines) is an adapter to the
same two methods. Results are committed by svserver alone, only after a call
returns, so a call retried elsewhere never stores twice.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from svwatchd._audio import Samples
from svwatchd.server._engines.base import Ask, Heard

__all__ = ["Executor"]


class Executor(Protocol):
    """The worker pool seam: submit clips, get each clip's utterances back."""

    def submit(self, clips: list[Samples], asks: list[Ask] | None = None) -> Future[list[Heard]]:
        """Decode the clips, each as its ask says; the future's result has what was heard
        in each clip, in order."""

    def info(self) -> dict[str, object]:
        """Engine, model and worker facts for sysinfo."""
