"""One decode worker as a Ray actor: the engine loaded and verified once, warm for its life.

This is the plain class Ray runs as an actor (``ray.remote`` is applied by
:mod:`~svwatchd.server._engines.rayexec`, so this module never imports ray at
import time). It does what a worker process of the local pool does, with the
same code (:func:`~svwatchd.server._engines.worker.load_warm`,
:func:`~svwatchd.server._engines.worker.run_job`): load the engine in the
constructor, with the model's digests verified on this node's own files, and
decode one job per call. Audio arrives with the call (the node needs no
shared filesystem); what was heard goes back to svserver, which alone writes
its database.

A constructor that raised would make Ray restart the actor in a loop, so a
load failure (e.g. this node's model files differ) is kept and reported by
:meth:`DecodeActor.ready`, with the node named, and the actor is then removed
by svserver.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from svwatchd.server._engines.base import Ask, Audio, EngineConfig
from svwatchd.server._engines.worker import JobOutcome, load_warm, pack_error, run_job

__all__ = [
    "DecodeActor",
    "NodeFacts",
]


@dataclass(frozen=True)
class NodeFacts:
    """Where an actor runs: Ray's node id, the node's address and host name, the pid."""

    node_id: str
    ip: str
    host: str
    pid: int

    @property
    def name(self) -> str:
        """How logs and errors name the node: host, address and the start of its id."""
        return f"{self.host} ({self.ip}, Ray node {self.node_id[:12]})"


def _here() -> NodeFacts:
    import ray

    return NodeFacts(
        node_id=ray.get_runtime_context().get_node_id(),
        ip=ray.util.get_node_ip_address(),
        host=socket.gethostname(),
        pid=os.getpid(),
    )


class DecodeActor:
    """A warm engine on one Ray node, one CPU: ``ready()`` once, then ``decode`` per job."""

    def __init__(self, config: EngineConfig) -> None:
        self._facts = _here()
        self._engine = None
        self._refusal: JobOutcome | None = None
        try:
            self._engine = load_warm(config)
        except Exception as exc:  # reported by ready(); raising here would restart in a loop
            self._refusal = "error", pack_error(exc)

    def ready(self) -> tuple[JobOutcome, NodeFacts]:
        """The engine's info (``"ok"``) or why it did not load (``"error"``), and where."""
        if self._engine is None:
            assert self._refusal is not None
            return self._refusal, self._facts
        return ("ok", self._engine.info()), self._facts

    def decode(self, clips: list[Audio], asks: list[Ask] | None) -> tuple[JobOutcome, NodeFacts]:
        """Decode one job (:func:`~svwatchd.server._engines.worker.run_job`), and where."""
        if self._engine is None:
            assert self._refusal is not None
            return self._refusal, self._facts
        return run_job(self._engine, clips, asks), self._facts
