"""svserver's decode workers as Ray actors: the executor seam filled across a cluster.

The same seam as :class:`~svwatchd.server._engines.pool.WorkerPool`
(``submit``, ``info``, ``close``): svserver keeps its API, SQLite, queue and
packing on one node and hands each job to a :class:`DecodeActor` (one CPU,
one warm engine) somewhere in the cluster. ``ray`` is imported here only when
an executor is made, so svwatchd works without the ``ray`` extra.

One feeding thread per actor takes jobs from a shared queue, so an actor has
one call at a time and a free actor takes the next job, as the pool's
processes do. Faults:

- an actor killed mid-call: Ray restarts it (``max_restarts``) and re-runs
  the call on it (``max_task_retries``); the future resolves once;
- a node lost mid-call (its actor cannot come back while the node is gone):
  the call is abandoned and the job goes back to the front of the queue for
  another actor; its thread waits until its actor is back (Ray places it
  again when a CPU frees) or makes a new one if Ray gave it up;
- a job is failed (:class:`~svwatchd.errors.WorkerCrashedError`, as the pool
  fails one whose worker died) only after actors crashed under it, on nodes
  that stayed up, :data:`MAX_LOSSES` times: a clip that kills every worker it
  touches ends; a job whose node or cluster went away runs again however
  often, its streams ACTIVE meanwhile (never ERROR for that);
- results are committed by svserver only after the future resolves, so a
  call run twice is never stored twice.

An actor whose engine does not load (e.g. its node's model files differ from
the recorded digests) is removed, logged (``ray.node_refused``, the node
named) and listed in :meth:`RayExecutor.info`; the others work. If none
loads, the executor does not start (:class:`~svwatchd.errors.WorkersRefusedError`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from svwatchd.errors import (
    EngineError,
    WorkerCrashedError,
    WorkersRefusedError,
)
from svwatchd.server._engines.base import Ask, Audio, EngineConfig, Heard, as_audio
from svwatchd.server._engines.pool import default_workers_and_threads, drained
from svwatchd.server._engines.rayactor import DecodeActor, NodeFacts
from svwatchd.server._engines.rayconnect import connect
from svwatchd.server._engines.raynodes import ClusterView
from svwatchd.server._engines.raysettings import RaySettings
from svwatchd.server._engines.worker import (
    JobOutcome,
    merged_info,
    native_thread_env,
    unpack_error,
)

__all__ = [
    "MAX_LOSSES",
    "RayExecutor",
]

log = structlog.get_logger("svserver.ray")

MAX_LOSSES = 3
"""A job under which actors crashed this many times (on nodes that stayed up, each after
Ray's own retries) fails instead of running again."""

_POLL = 1.0  # seconds between looks at a call's node while it runs
_SETTLE = 10.0  # at start: how long to wait for the slower actors once one is ready


@dataclass(order=True)
class _Job:
    """A submitted job; retried jobs sort first (``order``), then by submission."""

    order: tuple[int, int]
    clips: list[Audio] = field(compare=False)
    asks: list[Ask] | None = field(compare=False)
    future: Future[list[Heard]] = field(compare=False, default_factory=Future)
    losses: int = field(compare=False, default=0)


class _Lost(Exception):
    """The call's actor or node went away before it answered; ``crash``: the actor died on
    a node that is still up (the job itself may be at fault), not with its node or the
    cluster (never the job's fault)."""

    def __init__(self, message: str, *, crash: bool) -> None:
        super().__init__(message)
        self.crash = crash


@dataclass
class _Slot:
    """One actor and what svserver knows of it."""

    actor: Any
    facts: NodeFacts | None = None
    info: dict[str, object] = field(default_factory=dict)


class RayExecutor:
    """Decode actors on a Ray cluster behind the executor seam; see the module docstring."""

    def __init__(
        self,
        config: EngineConfig,
        settings: RaySettings,
        data_dir: Path,
        *,
        start_timeout: float = 300.0,
    ) -> None:
        self.config = config
        self.settings = settings
        self.restarts = 0
        self.refused: dict[str, str] = {}
        local_cpus = settings.workers or default_workers_and_threads()[0]
        self._ray = connect(settings, data_dir, local_cpus)
        self._queue: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._lock = threading.Lock()
        self._seq = 0
        self._busy = 0
        self._closed = False
        self._view = ClusterView(self._ray)
        self._threads: list[threading.Thread] = []
        try:
            wanted = settings.workers or max(1, int(self._ray.cluster_resources().get("CPU", 1)))
            self._slots = self._start(wanted, start_timeout)
        except BaseException:
            self._ray.shutdown()
            raise
        for n in range(len(self._slots)):
            t = threading.Thread(target=self._serve, args=(n,), name=f"ray-slot-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    # -- the seam ---------------------------------------------------------------------------

    def submit(
        self, clips: Sequence[Audio], asks: Sequence[Ask] | None = None
    ) -> Future[list[Heard]]:
        """Queue one job for the next free actor; the future has what each clip was heard as."""
        checked = [as_audio(c, what=f"clip {i}") for i, c in enumerate(clips)]
        with self._lock:
            if self._closed:
                raise EngineError("the Ray executor is closed")
            self._seq += 1
            job = _Job((1, self._seq), checked, list(asks) if asks is not None else None)
        if not checked:
            job.future.set_result([])
            return job.future
        job.future.set_running_or_notify_cancel()
        self._queue.put(job)
        return job.future

    def info(self) -> dict[str, object]:
        """The engine's facts plus the cluster's: workers (by node), busy, restarts, nodes."""
        with self._lock:
            slots = [s for s in self._slots if s.facts is not None]
            busy = self._busy
        info = merged_info(slots[0].info if slots else {}, [s.info for s in slots])
        by_node: dict[str, int] = {}
        for s in slots:
            assert s.facts is not None
            by_node[s.facts.node_id] = by_node.get(s.facts.node_id, 0) + 1
        nodes, cluster = self._view.describe(by_node)
        info.update(
            executor="ray",
            ray_address=self.settings.address,
            workers=len(slots),
            workers_waiting=len(self._slots) - len(slots),  # for a CPU, or a node to return
            busy=busy,
            queued=self._queue.qsize(),
            restarts=self.restarts,
            worker_pids=[s.facts.pid for s in slots if s.facts is not None],
            cluster=cluster,
            nodes=nodes,
            refused=dict(self.refused),
        )
        return info

    def close(self, timeout: float = 30.0) -> None:
        """Stop: cancel queued jobs, give running calls ``timeout`` s, remove the actors and
        leave the cluster (a private Ray stops with it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for job in drained(self._queue):
            if not job.future.done():  # running from its submission on: failed, not cancelled
                job.future.set_exception(EngineError("the Ray executor closed before the job ran"))
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for s in self._slots:
            with contextlib.suppress(Exception):
                self._ray.kill(s.actor, no_restart=True)
        self._ray.shutdown()

    # -- start ------------------------------------------------------------------------------

    def _spawn(self) -> Any:
        remote = self._ray.remote(DecodeActor)
        return remote.options(
            num_cpus=1,
            max_restarts=self.settings.max_restarts,
            max_task_retries=self.settings.max_task_retries,
            scheduling_strategy="SPREAD",
            # numpy's OpenBLAS would start a thread per core in every actor: capped, as the
            # local workers are (env_vars only: no packages, no working dir shipped)
            runtime_env={"env_vars": native_thread_env(self.config.threads)},
        ).remote(self.config)

    def _start(self, wanted: int, timeout: float) -> list[_Slot]:
        """Make ``wanted`` actors and wait for them to load; keep those that did (or are
        still waiting for a CPU), drop and report those that refused."""
        ray = self._ray
        slots = [_Slot(self._spawn()) for _ in range(wanted)]
        pending = {s.actor.ready.remote(): s for s in slots}
        deadline = time.monotonic() + timeout
        first_ready: float | None = None
        while pending and time.monotonic() < deadline:
            if first_ready is not None and time.monotonic() > first_ready + _SETTLE:
                break  # the rest wait for a CPU; their threads take them in when ready
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                slot = pending.pop(ref)
                if self._take_ready(slot, ray.get(ref)):
                    first_ready = first_ready or time.monotonic()
                else:
                    slots.remove(slot)
        if first_ready is None:
            for s in slots:
                ray.kill(s.actor, no_restart=True)
            if self.refused:
                raise WorkersRefusedError(
                    "No decode actor could load the engine: "
                    + "; ".join(f"on {node}: {why}" for node, why in self.refused.items()),
                    address=self.settings.address,
                    nodes=dict(self.refused),
                )
            raise EngineError(f"no decode actor was ready within {timeout:g} s")
        log.info(
            "ray.ready", actors=wanted - len(pending), wanted=wanted, address=self.settings.address
        )
        return slots

    def _take_ready(self, slot: _Slot, answer: tuple[JobOutcome, NodeFacts]) -> bool:
        """Record an actor's ready answer; a refusal removes it (False)."""
        (kind, payload), facts = answer
        if kind == "error":
            why = str(unpack_error(payload))
            self.refused[facts.name] = why
            log.error(
                "ray.node_refused",
                node=facts.name,
                node_id=facts.node_id,
                error=why,
                detail="its decode actor did not start; the other nodes' actors work",
            )
            self._ray.kill(slot.actor, no_restart=True)
            slot.facts = None
            return False
        self._note(slot, facts)
        slot.info = dict(payload)
        return True

    # -- feeding threads --------------------------------------------------------------------

    def _serve(self, n: int) -> None:
        slot = self._slots[n]
        if slot.facts is None and not self._recover(slot):
            return
        while not self._closed:
            try:
                job = self._queue.get(timeout=_POLL)
            except queue.Empty:
                continue
            if job.future.done():  # failed by close() meanwhile
                continue
            with self._lock:
                self._busy += 1
            try:
                self._run(slot, job)
            except _Lost as lost:
                self._lose(job, slot, lost)
                if not self._recover(slot):
                    return
            except BaseException as exc:  # never let a feeding thread die silently
                log.exception("ray.slot_failed")
                if not job.future.done():
                    job.future.set_exception(exc)
            finally:
                with self._lock:
                    self._busy -= 1

    def _run(self, slot: _Slot, job: _Job) -> None:
        ref = slot.actor.decode.remote(job.clips, job.asks)
        (kind, payload), facts = self._wait(slot, ref)
        self._note(slot, facts)
        if kind == "error":
            job.future.set_exception(unpack_error(payload))
            return
        heard, engine_info = payload
        slot.info = dict(engine_info)
        job.future.set_result(heard)

    def _wait(self, slot: _Slot, ref: Any) -> Any:
        """The call's answer; _Lost when its actor dies for good or its node is gone."""
        ray = self._ray
        node = slot.facts.node_id if slot.facts else None
        while True:
            done, _ = ray.wait([ref], timeout=_POLL)
            if done:
                try:
                    return ray.get(ref)
                except ray.exceptions.RayError as exc:
                    crash = node is not None and self._view.alive(node, fresh=True)
                    why = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                    raise _Lost(why, crash=crash) from None
            if self._closed:
                raise EngineError("the Ray executor was closed before the job finished")
            if node is not None and not self._view.alive(node):
                raise _Lost(f"Ray node {node[:12]} is gone", crash=False)

    def _lose(self, job: _Job, slot: _Slot, lost: _Lost) -> None:
        """A call was lost: run the job again on another actor; fail it only when actors
        crashed under it :data:`MAX_LOSSES` times (a lost node or cluster never counts)."""
        if lost.crash:
            job.losses += 1
        where = slot.facts.name if slot.facts else "a Ray node"
        if job.losses >= MAX_LOSSES:
            job.future.set_exception(
                WorkerCrashedError(
                    f"the decode actor on {where} was lost ({lost}) while decoding "
                    f"{len(job.clips)} clip(s), for the {job.losses}th time; the job was not "
                    "finished"
                )
            )
            return
        log.warning("ray.call_lost", node=where, error=str(lost), detail="the job runs again")
        job.order = (0, job.order[1])
        self._queue.put(job)

    def _recover(self, slot: _Slot) -> bool:
        """Wait until the slot's actor answers again (Ray restarts or re-places it), or make a
        new one when Ray gave it up; False when closing or its engine no longer loads."""
        ray = self._ray
        while not self._closed:
            ref = slot.actor.ready.remote()
            if not self._settled(ref):
                return False
            try:
                answer = ray.get(ref)
            except ray.exceptions.RayError:
                with contextlib.suppress(Exception):
                    ray.kill(slot.actor, no_restart=True)
                slot.actor = self._spawn()
                slot.facts = None
                with self._lock:
                    self.restarts += 1
                continue
            return self._take_ready(slot, answer)
        return False

    def _settled(self, ref: Any) -> bool:
        """Wait for a call to end (answer or error); False if the executor closes first."""
        while not self._closed:
            done, _ = self._ray.wait([ref], timeout=_POLL)
            if done:
                return True
        return False

    def _note(self, slot: _Slot, facts: NodeFacts) -> None:
        """Count a restart when the actor answers from a new process."""
        if slot.facts is not None and facts.pid != slot.facts.pid:
            with self._lock:
                self.restarts += 1
            log.warning("ray.actor_restarted", node=facts.name, pid=facts.pid)
        slot.facts = facts
