"""The Ray cluster's nodes as svserver sees them: which are alive, their CPUs, its actors.

Ray's node table lives in the cluster's head (GCS); reading it costs a round
trip, so it is read at most once a second for ``info()`` and for the feeding
threads' look at a running call's node, and at once (``fresh``) when a call
has failed and whether its node is still up decides what the failure means.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = [
    "REFRESH_SECONDS",
    "ClusterView",
]

REFRESH_SECONDS = 1.0
"""How old the node table may be for ``info()`` and the running calls' checks."""


class ClusterView:
    """Ray's node table (``ray.nodes()``), cached; thread-safe."""

    def __init__(self, ray: Any) -> None:
        self._ray = ray
        self._lock = threading.Lock()
        self._nodes: list[dict[str, Any]] = []
        self._read_at = 0.0

    def nodes(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """Every node Ray knows (alive or not); the last table read when the cluster does
        not answer now (empty if ``fresh``: nothing is known to be up)."""
        with self._lock:
            if not fresh and time.monotonic() - self._read_at < REFRESH_SECONDS:
                return self._nodes
        try:
            nodes = list(self._ray.nodes())
        except Exception:  # the cluster is unreachable right now
            return [] if fresh else self._nodes
        with self._lock:
            self._nodes, self._read_at = nodes, time.monotonic()
        return nodes

    def alive(self, node_id: str, *, fresh: bool = False) -> bool:
        """Whether the node is up (as far as the cluster answers)."""
        return any(n["NodeID"] == node_id and n.get("Alive") for n in self.nodes(fresh=fresh))

    def describe(self, workers: dict[str, int]) -> tuple[list[dict[str, object]], dict[str, int]]:
        """Each node (id, address, alive, CPUs, ``workers`` on it), and the alive ones'
        count and CPUs: the cluster's part of ``info()``."""
        table: list[dict[str, object]] = []
        cpus = alive = 0
        for n in self.nodes():
            up, cores = bool(n.get("Alive")), int(n.get("Resources", {}).get("CPU", 0))
            table.append(
                {
                    "node_id": n["NodeID"],
                    "address": n.get("NodeManagerAddress"),
                    "alive": up,
                    "cpus": cores,
                    "workers": workers.get(n["NodeID"], 0),
                }
            )
            alive, cpus = alive + up, cpus + (cores if up else 0)
        return table, {"nodes": alive, "cpus": cpus}
