"""Completion notifications, the loop's side: hand out what is due, record what came back.

Deliveries are owed in the journal (`svwatchd.daemon._deliveries`); the
delivery thread (`svwatchd.daemon._delivery`) attempts them. Each turn
`Notifier.step` records the outcomes (SENT after a 2xx or an exit status 0;
a failure is retried later) and hands out the deliveries now due, a few at a
time, so a slow receiver never holds up ingestion, submission or outputs.

Retries follow tenacity's capped exponential backoff with jitter
(`backoff`: 0.5 s, 1 s, 2 s, ... up to 60 s, plus up to 0.5 s of jitter), the
last one at the end of the channel's ``retry_for``; a delivery that fails
after that is FAILED, logged ``notify.failed`` and counted. At a start every
PENDING delivery is due at once (`start`). Deliveries of a watch a reload
removed wait for it, as its files do; those whose watch no longer has the
channel fail (nobody to deliver to). Logs: ``notify.sent`` (info),
``notify.retry`` (warning), ``notify.failed`` (error), each with the
delivery id, the channel, the event and the file's ``path``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from svwatchd.daemon._collaborators import Log, Metrics
from svwatchd.daemon._deliveries import Delivery, DeliveryLog
from svwatchd.daemon._delivery import DeliveryWorker, Job, Outcome
from svwatchd.daemon._journal import Journal
from svwatchd.daemon._notifyconfig import ExecConfig, WebhookConfig
from svwatchd.daemon._watchconfig import WatchId
from svwatchd.daemon._watches import Watches
from svwatchd.errors import JournalWriteError

__all__ = ["OUT_AT_ONCE", "Notifier", "backoff"]

OUT_AT_ONCE = 8  # deliveries with the thread at a time: few, so retries are scheduled fresh
_WAIT = wait_exponential_jitter(multiplier=0.5, max=60.0, exp_base=2, jitter=0.5)


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based), by tenacity's
    capped exponential backoff with jitter."""
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = attempt
    return float(_WAIT(state))


class Notifier:
    """Schedules deliveries for the delivery thread; ``step()`` once per turn of the loop."""

    def __init__(
        self,
        journal: Journal,
        watches: Watches,
        log: Log,
        metrics: Metrics,
        *,
        wakeup: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.deliveries = DeliveryLog(journal)
        self.watches = watches
        self.log = log
        self.metrics = metrics
        self._clock = clock
        self._worker = DeliveryWorker(wakeup=wakeup)
        self._out: set[tuple[str, str]] = set()  # (id, channel) with the thread

    def start(self) -> None:
        """Resume the deliveries a previous run left pending: all due now."""
        pending = self.deliveries.resume(self._clock())
        if pending:
            self.log.info("notify.resumed", count=pending)

    def step(self) -> None:
        """Record the outcomes that came back, then hand out what is due."""
        outcomes = self._worker.outcomes()
        for outcome in outcomes:  # released first, all: one that fails to apply (the journal's
            # disk full) stays PENDING and is handed out again, never held back as if still out
            self._out.discard((outcome.job.delivery.id, outcome.job.delivery.channel))
        for outcome in outcomes:
            self._apply(outcome)
        room = OUT_AT_ONCE - len(self._out)
        if room <= 0:
            return
        now = self._clock()
        # deliveries of a watch a reload removed wait for it to come back
        due = self.deliveries.due(now, room, watches=self.watches.ids, exclude=self._out)
        for delivery in due:
            watch = self.watches.get(WatchId(delivery.watch))
            notify = watch.notify if watch is not None else None
            target: WebhookConfig | ExecConfig | None = None
            if notify is not None:
                target = notify.webhook if delivery.channel == "webhook" else notify.exec
            if target is None:
                self._failed(delivery, f"the watch has no {delivery.channel} any more", now)
                continue
            self._out.add((delivery.id, delivery.channel))
            self._worker.put(Job(delivery, target))

    def _apply(self, outcome: Outcome) -> None:
        delivery, now = outcome.job.delivery, self._clock()
        log = self._log(delivery)
        if outcome.error is None:
            if self.deliveries.sent(delivery, now):
                self.metrics.notify_sent(delivery.channel)
                log.info("notify.sent", attempt=delivery.attempts + 1, seconds=outcome.seconds)
            return
        deadline = delivery.created + outcome.job.target.retry_for
        if now >= deadline:
            self._failed(delivery, outcome.error, now)
            return
        delay = backoff(delivery.attempts + 1)
        next_at = min(now + delay, deadline)
        attempts = self.deliveries.retry_later(delivery, outcome.error, next_at)
        self.metrics.notify_retry(delivery.channel)
        log.warning(
            "notify.retry",
            attempt=attempts,
            error=outcome.error,
            retry_in=round(next_at - now, 2),
        )

    def _failed(self, delivery: Delivery, error: str, now: float) -> None:
        if self.deliveries.failed(delivery, error, now):
            self.metrics.notify_failed(delivery.channel)
            self._log(delivery).error("notify.failed", attempts=delivery.attempts + 1, error=error)

    def _log(self, delivery: Delivery) -> Log:
        doc = delivery.document
        return self.log.bind(
            path=doc.get("path"),
            stream_id=doc.get("stream_id"),
            delivery=delivery.id,
            channel=delivery.channel,
            notify_event=delivery.event,
        )

    def pending(self) -> int:
        """Deliveries owed and not delivered yet (for the metrics)."""
        return self.deliveries.pending()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the delivery thread after its attempt in progress and record what came back
        (what was not delivered stays PENDING: delivered at the next start, same id)."""
        self._worker.close(timeout)
        try:
            for outcome in self._worker.outcomes():
                self._apply(outcome)
        except JournalWriteError as exc:  # stopping: delivered again at the next start
            self.log.error(
                "journal.write_failed", error=str(exc), path=exc.path, free_bytes=exc.free_bytes
            )
