"""The decode worker pool: warm engine processes behind a submit-and-wait seam.

svserver hands the pool lists of clips and gets a
:class:`concurrent.futures.Future` per list; it commits results only after a
future resolves. That seam (``submit``, ``info``, ``busy``, ``close``) is all
the server sees, so a Ray executor can replace this class as an adapter.

Each worker is a separate process (``spawn`` context: no forked copies of the
server's threads, sockets or SQLite handles) that loads its engine once, with
the model verified once per process start, and then decodes one job at a time.
One thread per worker in the server process feeds it from a shared queue and
watches it: when a worker dies (OOM killer, SIGKILL, a native crash) its
in-flight future fails with :class:`WorkerCrashedError` and a fresh worker
takes its place. A worker that cannot load (a damaged model, a bad setting)
makes :meth:`WorkerPool.start` raise the worker's own error (same class, same
message, the worker's traceback as a note) instead of hanging.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from svwatchd.errors import EngineError, WorkerCrashedError
from svwatchd.server._engines.base import Ask, Audio, EngineConfig, Heard, as_audio
from svwatchd.server._engines.worker import Worker, WorkerGoneError, merged_info, spawn_worker

__all__ = [
    "Result",
    "WorkerPool",
    "default_workers_and_threads",
    "drained",
]

log = logging.getLogger(__name__)

Result = list[Heard]

_T = TypeVar("_T")


def default_workers_and_threads(cores: int | None = None) -> tuple[int, int]:
    """How many worker processes, and CTranslate2 threads each, for ``cores`` CPU cores.

    The rule: one single-threaded worker per core (``(cores, 1)``). Measured
    on this project's 2-core machine with tiny.en int8, 2 workers x 1 thread
    against 1 worker x 2 threads: 60x against 27x real time on long-form
    audio, 42x against 23x on packed short clips, 21x against 12.5x on short
    clips one by one; 1 x 2 threads was no faster than 1 x 1 thread.
    CTranslate2's intra-op threads do not pay on a small model here, while
    processes scale almost linearly. A tiny.en worker holds about 0.3 GB
    (0.4 GB at peak), so for larger models memory, not cores, bounds the count.
    ``cores`` defaults to the CPUs this process may run on.
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        cores = cores or os.cpu_count() or 1
    return max(1, cores), 1


def drained(jobs: queue.SimpleQueue[_T] | queue.Queue[_T]) -> list[_T]:
    """Everything waiting in ``jobs``, taken out (what a closing executor must settle)."""
    taken: list[_T] = []
    while True:
        try:
            taken.append(jobs.get_nowait())
        except queue.Empty:
            return taken


@dataclass
class _Job:
    clips: list[Audio]
    asks: list[Ask] | None = None
    future: Future[Result] = field(default_factory=Future)


class WorkerPool:
    """``workers`` warm engine processes built from ``config``; submit clips, get futures.

    ``start()`` (called by the constructor unless ``start=False``) returns
    only when every worker has loaded its engine, or raises the first load
    error. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        config: EngineConfig,
        workers: int,
        *,
        start: bool = True,
        start_timeout: float = 300.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.config = config
        self.workers = workers
        self.start_timeout = start_timeout
        self.restarts = 0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._slots: list[Worker | None] = [None] * workers
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._started = False
        self._closed = False
        self._engine_info: dict[str, object] = {}
        self._latest: dict[int, dict[str, object]] = {}  # slot -> its engine's info, last job
        if start:
            self.start()

    def start(self) -> None:
        """Start every worker (they load in parallel) and wait until all are ready."""
        with self._lock:
            if self._closed:
                raise EngineError("the worker pool is closed")
            if self._started:
                return
            self._started = True
        spawned = [spawn_worker(self.config, n) for n in range(self.workers)]
        try:
            infos = [w.wait_ready(self.start_timeout) for w in spawned]
        except BaseException:
            for w in spawned:
                w.stop(timeout=0)
            with self._lock:
                self._closed = True
            raise
        self._engine_info = infos[0]
        self._slots = list(spawned)
        for n in range(self.workers):
            t = threading.Thread(
                target=self._serve, args=(n,), name=f"decode-slot-{n}", daemon=True
            )
            t.start()
            self._threads.append(t)
        log.info("decode pool ready: %d workers, %s", self.workers, self._engine_info)

    def submit(self, clips: Sequence[Audio], asks: Sequence[Ask] | None = None) -> Future[Result]:
        """Queue one job: decode ``clips`` (independent clips, each as its ``asks`` entry
        says) on the next free worker.

        The future's result holds what was heard in each clip, in order.
        Bad clips (not 1-D floating point, NaN) raise InvalidInputError here.
        """
        checked = [as_audio(c, what=f"clip {i}") for i, c in enumerate(clips)]
        job = _Job(checked, list(asks) if asks is not None else None)
        with self._lock:
            if self._closed or not self._started:
                raise EngineError("the worker pool is not running (closed or not started)")
        if not checked:
            job.future.set_result([])
            return job.future
        self._queue.put(job)
        return job.future

    @property
    def busy(self) -> int:
        """Jobs being decoded right now (at most ``workers``)."""
        with self._lock:
            return self._busy

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring and tests)."""
        with self._lock:
            return [w.pid for w in self._slots if w is not None and w.alive]

    def info(self) -> dict[str, object]:
        """The engine's facts (from a worker) plus the pool's: workers, busy, restarts."""
        with self._lock:
            latest = list(self._latest.values())
        info = merged_info(self._engine_info, latest)
        info.update(
            workers=self.workers,
            busy=self.busy,
            queued=self._queue.qsize(),
            restarts=self.restarts,
            worker_pids=self.worker_pids,
        )
        return info

    def close(self, timeout: float = 30.0) -> None:
        """Stop: cancel queued jobs, let running ones finish for ``timeout`` s, end the workers."""
        with self._lock:
            if self._closed and not self._threads:
                return
            self._closed = True
        for job in drained(self._queue):
            if job is not None:
                job.future.cancel()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for w in self._slots:
            if w is not None:
                w.stop(timeout=max(0.0, deadline - time.monotonic()))
        for t in self._threads:
            t.join(5.0)
        self._threads = []

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- slot threads ---------------------------------------------------------------------

    def _serve(self, slot: int) -> None:
        """Feed worker ``slot`` jobs from the queue until closed; replace it when it dies."""
        while True:
            job = self._queue.get()
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                continue
            with self._lock:
                self._busy += 1
            try:
                self._run(slot, job)
            except BaseException as exc:  # never let a slot thread die silently
                log.error("decode worker %d is unavailable: %s", slot, exc)
                if not job.future.done():
                    job.future.set_exception(exc)
            finally:
                with self._lock:
                    self._busy -= 1

    def _run(self, slot: int, job: _Job) -> None:
        worker = self._live_worker(slot)
        try:
            outcome: Any = worker.call(job.clips, job.asks)
        except WorkerGoneError as gone:
            if self._closed:
                job.future.set_exception(
                    EngineError("the worker pool was closed before the job finished")
                )
                return
            log.error("decode worker %d (pid %s) died: %s", slot, worker.pid, gone)
            job.future.set_exception(
                WorkerCrashedError(
                    f"decode worker pid {worker.pid} died ({gone}) while decoding "
                    f"{len(job.clips)} clip(s); the job was not finished"
                )
            )
            try:
                self._replace(slot)
            except Exception as exc:  # the next job that needs this slot tries again
                log.error("decode worker %d could not be restarted: %s", slot, exc)
            return
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            heard, engine_info = outcome
            with self._lock:
                self._latest[slot] = engine_info
            job.future.set_result(heard)

    def _live_worker(self, slot: int) -> Worker:
        """The slot's worker, replaced first if it died while idle."""
        if self._closed:
            raise EngineError("the worker pool is closed")
        worker = self._slots[slot]
        if worker is None or not worker.alive:
            worker = self._replace(slot)
        return worker

    def _replace(self, slot: int) -> Worker:
        """Start a new worker for ``slot``; a load failure fails the job that needed it."""
        old = self._slots[slot]
        if old is not None:
            old.stop(timeout=1.0)
        with self._lock:
            self._slots[slot] = None
            self._latest.pop(slot, None)  # a new process counts from zero
            self.restarts += 1
        worker = spawn_worker(self.config, slot)
        try:
            worker.wait_ready(self.start_timeout)
        except BaseException:
            worker.stop(timeout=0)
            raise
        with self._lock:
            closed = self._closed
            if not closed:
                self._slots[slot] = worker
        if closed:  # close() ran while this worker loaded: it must not outlive the pool
            worker.stop(timeout=1.0)
            raise EngineError("the worker pool is closed")
        log.warning("decode worker %d replaced (pid %d)", slot, worker.pid)
        return worker
