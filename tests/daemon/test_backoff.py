"""Submissions back off while svserver is down -- and come back soon after it is up.

The refreshes (every ``refresh_interval``) keep failing during an outage; they
must not each lengthen the submissions' wait, or a 3 s restart of svserver
leaves files waiting a whole minute (the fault suite measured 35 s of
recovery after a short restart). A refresh that is answered ends an outage in
which svserver did not answer at all; a 5xx (507, disk full) keeps its backoff.
"""

from __future__ import annotations

import structlog

from svwatchd.daemon._link import Reachability
from svwatchd.errors import ServerFailedError, ServerUnreachableError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


DOWN = ServerUnreachableError("Cannot reach svserver", url="http://127.0.0.1:1")
FULL = ServerFailedError("failed with 507", status_code=507, url="http://127.0.0.1:1")


def _reach() -> tuple[Reachability, Clock]:
    clock = Clock()
    return Reachability(structlog.get_logger("test"), clock=clock), clock


def test_failures_while_waiting_do_not_lengthen_the_wait() -> None:
    reach, clock = _reach()
    reach.unreachable(DOWN)  # a submission failed: wait 1-2 s
    for _ in range(10):  # a 3 s outage: refreshes fail every 0.3 s meanwhile
        clock.now += 0.3
        reach.unreachable(DOWN)
    # only the failures after each wait count: 1-2 s, then 2-3 s (not 2^10 s, capped at 60)
    clock.now += 4.01
    assert not reach.waiting()


def test_an_answered_refresh_ends_an_outage_without_answers() -> None:
    reach, clock = _reach()
    for _ in range(6):  # attempts after each wait: 1, 2, 4, 8, 16, 32 s
        reach.unreachable(DOWN)
        clock.now += 0.1
    assert reach.waiting()
    reach.refreshed()  # svserver is back
    assert not reach.waiting() and reach.reachable is True


def test_a_server_that_answers_507_keeps_its_backoff() -> None:
    reach, clock = _reach()
    reach.unreachable(FULL)
    clock.now += 0.1
    reach.refreshed()  # refreshes work, but submissions are refused for a full disk
    assert reach.waiting() and reach.reachable is False
