"""The delivery thread: sends notifications, one at a time, and nothing else.

The loop (`svwatchd.daemon._notifier`) hands over a `Job` (a delivery owed,
read from the journal, and its channel's config) and gets an `Outcome` back;
the journal, the retry schedule, the logs and the metrics stay the loop's, so
a slow or dead receiver costs this thread its time and never the loop's.

A webhook is a POST of the delivery's JSON (the same bytes on every retry)
with ``X-Svwatchd-Delivery`` (the stable id), ``X-Svwatchd-Event``,
``X-Svwatchd-Timestamp`` (Unix seconds, at this attempt) and
``X-Svwatchd-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``
keyed by the shared secret (`sign`): a receiver checks the signature
(forgery) and that the timestamp is recent (replay). Only a 2xx answer counts;
redirects are not followed. An ``exec`` command runs without a shell, with
the source path and the output paths appended to its arguments, the JSON on
stdin and ``SVWATCHD_EVENT`` / ``SVWATCHD_DELIVERY`` in its environment; only
exit status 0 counts, and it is killed after its ``timeout``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from svwatchd.daemon._deliveries import Delivery
from svwatchd.daemon._notifyconfig import ExecConfig, WebhookConfig

__all__ = ["DeliveryWorker", "Job", "Outcome", "deliver", "sign"]

_OUTPUT_CHARS = 300  # of a failed command's output, in the error


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=`` + the hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed by ``secret``."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True)
class Job:
    """One delivery to attempt, with its channel's config as the loop has it now."""

    delivery: Delivery
    target: WebhookConfig | ExecConfig


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt: ``error`` None means delivered."""

    job: Job
    error: str | None = None
    seconds: float = 0.0


def _post(client: httpx.Client, hook: WebhookConfig, delivery: Delivery) -> str | None:
    body = delivery.payload.encode("utf-8")
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "svwatchd",
        "X-Svwatchd-Event": delivery.event,
        "X-Svwatchd-Delivery": delivery.id,
        "X-Svwatchd-Timestamp": str(stamp),
        "X-Svwatchd-Signature": sign(hook.secret, stamp, body),
    }
    try:
        answer = client.post(hook.url, content=body, headers=headers, timeout=hook.timeout)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if 200 <= answer.status_code < 300:
        return None
    return f"HTTP {answer.status_code} from {hook.url}"


def _run(command: ExecConfig, delivery: Delivery) -> str | None:
    doc = delivery.document
    outputs = doc.get("outputs")
    paths = [str(doc["path"]), *(str(p) for p in outputs)] if isinstance(outputs, list) else []
    env = {**os.environ, "SVWATCHD_EVENT": delivery.event, "SVWATCHD_DELIVERY": delivery.id}
    try:
        done = subprocess.run(
            [*command.command, *paths],
            input=delivery.payload.encode("utf-8"),
            capture_output=True,
            env=env,
            timeout=command.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{command.command[0]} did not finish within {command.timeout:g} s (killed)"
    except OSError as exc:
        return f"cannot run {command.command[0]}: {exc}"
    if done.returncode == 0:
        return None
    said = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-_OUTPUT_CHARS:]
    return f"{command.command[0]} exited with status {done.returncode}" + (
        f": {said}" if said else ""
    )


def deliver(job: Job, client: httpx.Client) -> Outcome:
    """Attempt one delivery (the thread's work, also callable directly)."""
    began = time.monotonic()
    try:
        if isinstance(job.target, WebhookConfig):
            error = _post(client, job.target, job.delivery)
        else:
            error = _run(job.target, job.delivery)
    except Exception as exc:  # reported to the loop, which retries it like any failure
        error = f"{type(exc).__name__}: {exc}"
    return Outcome(job, error, time.monotonic() - began)


class DeliveryWorker:
    """The delivery thread and its two queues: jobs in, outcomes out."""

    def __init__(self, *, wakeup: Callable[[], None] = lambda: None) -> None:
        self._wakeup = wakeup  # the loop waits on it; set after each outcome
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def put(self, job: Job) -> None:
        """Queue a job (starting the thread on first use)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="svwatchd-notify", daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def outcomes(self) -> list[Outcome]:
        """The outcomes that came back since the last call."""
        out: list[Outcome] = []
        while True:
            try:
                out.append(self._outcomes.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        with httpx.Client(follow_redirects=False) as client:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                self._outcomes.put(deliver(job, client))
                self._wakeup()

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the job in progress (those still queued stay PENDING in the journal and
        are delivered at the next start), waiting ``timeout`` seconds at most."""
        thread = self._thread
        if thread is None:
            return
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        self._jobs.put(None)
        thread.join(timeout)
        self._thread = None
