"""The Ray executor seen from svserver: the Ray driver in a child process, restarted when lost.

Ray ends a driver process once its cluster's head (GCS) has been unreachable
for ``RAY_gcs_rpc_server_reconnect_timeout_s`` (60 s by default), and a head
started again without GCS fault tolerance is a new cluster a driver cannot
rejoin. So svserver does not join Ray itself: :class:`RayDriver` runs the
:class:`~svwatchd.server._engines.rayexec.RayExecutor` in a child process
(the driver) and keeps every job it handed over until its answer is back.
When the driver ends (head lost, driver killed), svserver keeps answering,
its streams stay QUEUED/ACTIVE (a lost cluster never fails a job), and it
starts a new driver until the cluster answers again, then hands the
unanswered jobs over again, in their order. A result is committed by
svserver only when it arrives, so a job run twice is stored once.

At start the first driver's failure is svserver's (an unreachable cluster, no
actor that loads): the error is raised at once, as before.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import structlog

from svwatchd._logs import LogFormat, configure_logging, logging_settings
from svwatchd.errors import EngineError
from svwatchd.server._engines.base import Ask, Audio, EngineConfig, Heard, as_audio
from svwatchd.server._engines.raysettings import RaySettings
from svwatchd.server._engines.worker import end_process, pack_error, unpack_error

__all__ = [
    "RECONNECT_DELAYS",
    "RayDriver",
]

log = structlog.get_logger("svserver.ray")

RECONNECT_DELAYS = (1.0, 2.0, 5.0, 10.0)
"""Seconds between attempts to start a driver again after it was lost (the last repeats)."""

_CONTEXT = multiprocessing.get_context("spawn")
_INFO_EVERY = 1.0  # seconds between the driver's reports of its executor's info()
_WHERE = "svserver's Ray driver process"
_START_GRACE = 60.0  # beyond the executor's own start timeout: the driver's imports


class _Gone(Exception):
    """The driver process ended, or its pipe broke."""


class _Driver:
    """One driver process and its end of the pipe."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.send_lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            with self.send_lock:
                self.conn.send(message)
        except (OSError, ValueError) as exc:
            raise _Gone(str(exc)) from None

    def receive(self, timeout: float | None = None) -> tuple[Any, ...]:
        try:
            if timeout is not None and not self.conn.poll(timeout):
                raise _Gone(f"no answer within {timeout:g} s")
            message: tuple[Any, ...] = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise _Gone(f"{type(exc).__name__} on its pipe") from None
        return message

    def end(self, timeout: float) -> None:
        """Ask the driver to stop; end it if it has not within ``timeout`` s."""
        with self.send_lock:
            end_process(self.process, self.conn, ("close",), timeout)

    def describe_exit(self) -> str:
        self.process.join(2.0)
        code = self.process.exitcode
        return "still running" if code is None else f"exit code {code}"


class RayDriver:
    """The executor seam (``submit``, ``info``, ``close``) over a Ray driver process."""

    def __init__(
        self,
        config: EngineConfig,
        settings: RaySettings,
        data_dir: Path,
        *,
        start_timeout: float = 300.0,
    ) -> None:
        self._args = (config, settings, data_dir, start_timeout)
        self._start_timeout = start_timeout + _START_GRACE
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[list[Audio], list[Ask] | None, Future[list[Heard]]]] = {}
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        self._connected = False
        self.driver_restarts = 0
        # the first driver's start error is svserver's own, raised here
        self._driver, self._info = self._launch()
        self._connected = True
        self._watcher = threading.Thread(target=self._watch, name="ray-driver", daemon=True)
        self._watcher.start()

    # -- the seam ---------------------------------------------------------------------------

    def submit(
        self, clips: Sequence[Audio], asks: Sequence[Ask] | None = None
    ) -> Future[list[Heard]]:
        """Hand one job to the driver (kept here until answered, so a lost driver's jobs are
        handed to the next one)."""
        checked = [as_audio(c, what=f"clip {i}") for i, c in enumerate(clips)]
        future: Future[list[Heard]] = Future()
        if not checked:
            future.set_result([])
            return future
        future.set_running_or_notify_cancel()
        listed = list(asks) if asks is not None else None
        with self._lock:
            if self._closed.is_set():
                raise EngineError("the Ray executor is closed")
            job_id = next(self._ids)
            self._pending[job_id] = (checked, listed, future)
            # under the lock: a reconnection hands over every pending job once; a send
            # that fails leaves the job for the next driver (the watcher sees the loss)
            if self._connected:
                with contextlib.suppress(_Gone):
                    self._driver.send(("submit", job_id, checked, listed))
        return future

    def info(self) -> dict[str, object]:
        """The driver's executor's facts; while no driver is connected, no workers."""
        with self._lock:
            info = dict(self._info)
            connected, pending = self._connected, len(self._pending)
        if not connected:
            info.update(workers=0, busy=0, worker_pids=[], nodes=[])
            info["cluster"] = {"nodes": 0, "cpus": 0}
            info["queued"] = pending
        info.update(connected=connected, driver_restarts=self.driver_restarts)
        return info

    def close(self, timeout: float = 30.0) -> None:
        """Stop the driver (it cancels its queue, removes its actors, leaves the cluster)
        and fail the jobs still unanswered."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            pending = list(self._pending.values())
            self._pending.clear()
        self._driver.end(timeout)
        self._watcher.join(5.0)
        for _, _, future in pending:
            if not future.done():
                future.set_exception(EngineError("the Ray executor closed before the job ran"))

    # -- the driver's life ------------------------------------------------------------------

    def _launch(self) -> tuple[_Driver, dict[str, object]]:
        """Start a driver and wait for its executor (its first info); its start error is
        raised here."""
        fmt, level = logging_settings()
        parent, child = _CONTEXT.Pipe(duplex=True)
        process = _CONTEXT.Process(
            target=_main,
            args=(child, *self._args, fmt, level),
            name="svserver-ray-driver",
            daemon=True,
        )
        process.start()
        child.close()
        driver = _Driver(process, parent)
        try:
            kind, payload = driver.receive(self._start_timeout)
        except _Gone as gone:
            driver.end(5.0)
            raise EngineError(
                f"the Ray driver process did not start ({gone}; {driver.describe_exit()})"
            ) from None
        if kind == "failed":
            driver.end(5.0)
            raise unpack_error(payload, _WHERE)
        return driver, dict(payload)

    def _watch(self) -> None:
        """Take the driver's answers; when it is lost, start another and hand it the jobs."""
        while not self._closed.is_set():
            try:
                self._take(self._driver.receive())
            except _Gone:
                if self._closed.is_set():
                    return
                self._reconnect()

    def _take(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "info":
            with self._lock:
                self._info = dict(message[1])
            return
        _, job_id, ok, payload = message
        with self._lock:
            entry = self._pending.pop(job_id, None)
        if entry is None or entry[2].done():
            return
        if ok:
            entry[2].set_result(payload)
        else:
            entry[2].set_exception(unpack_error(payload, _WHERE))

    def _reconnect(self) -> None:
        """Start drivers until one joins the cluster, then hand it the unanswered jobs."""
        with self._lock:
            self._connected = False
            waiting = len(self._pending)
        log.error(
            "ray.driver_lost",
            error=self._driver.describe_exit(),
            jobs_waiting=waiting,
            detail="streams stay queued or active; svserver joins the cluster again when it "
            "answers",
        )
        self._driver.end(5.0)
        for attempt in itertools.count():
            time.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            if self._closed.is_set():
                return
            try:
                driver, info = self._launch()
            except Exception as exc:
                log.warning("ray.reconnect_failed", attempt=attempt + 1, error=str(exc))
                continue
            with self._lock:
                if self._closed.is_set():  # close() came while this driver started
                    driver.end(5.0)
                    return
                self._driver, self._info, self._connected = driver, info, True
                self.driver_restarts += 1
                jobs = list(self._pending.items())
                with contextlib.suppress(_Gone):  # lost at once: the watcher sees it next
                    for job_id, (clips, asks, _) in jobs:
                        driver.send(("submit", job_id, clips, asks))
            log.info("ray.reconnected", attempts=attempt + 1, jobs_resent=len(jobs))
            return


def _main(
    conn: Connection,
    config: EngineConfig,
    settings: RaySettings,
    data_dir: Path,
    start_timeout: float,
    fmt: LogFormat,
    level: str,
) -> None:
    """The driver process: join Ray, run its executor, answer svserver until told to stop
    or svserver is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # svserver decides when its driver stops
    configure_logging(fmt, level)
    from svwatchd.server._engines.rayexec import RayExecutor

    try:
        executor = RayExecutor(config, settings, data_dir, start_timeout=start_timeout)
    except BaseException as exc:
        conn.send(("failed", pack_error(exc)))
        return
    lock = threading.Lock()
    done = threading.Event()

    def send(message: tuple[Any, ...]) -> None:
        try:
            with lock:
                conn.send(message)
        except (OSError, ValueError):
            done.set()

    def answer(job_id: int, future: Future[list[Heard]]) -> None:
        exc = future.exception()
        if exc is None:
            send(("result", job_id, True, future.result()))
        else:
            send(("result", job_id, False, pack_error(exc)))

    def report() -> None:
        while not done.wait(_INFO_EVERY):
            send(("info", executor.info()))

    send(("ready", executor.info()))
    threading.Thread(target=report, name="ray-driver-info", daemon=True).start()
    try:
        while not done.is_set():
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return  # svserver is gone
            if message[0] != "submit":
                return
            _, job_id, clips, asks = message
            future = executor.submit(clips, asks)
            future.add_done_callback(functools.partial(answer, job_id))
    finally:
        done.set()
        executor.close()
