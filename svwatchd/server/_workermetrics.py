"""The decode workers in svserver's metrics, whichever executor runs them.

Read at scrape time from the executor's ``info()`` (the seam's one facts
call), so this module does not know which executor it is: the local pool
reports its workers on this host; the Ray executor also reports the
cluster's nodes (``nodes``: each node's id, address, CPUs and actors) and
size (``cluster``).

- ``svserver_decode_workers{node}``: workers by node (the local pool: one
  node, this host; Ray: every node the cluster knows, alive, 0 where none runs);
- ``svserver_decode_workers_waiting``: workers waiting for a CPU or their node;
- ``svserver_decode_jobs_running``: jobs the workers are decoding now;
- ``svserver_decode_worker_restarts_total``: workers that came back in a new process;
- ``svserver_cluster_nodes``, ``svserver_cluster_cpus``: the cluster's alive
  nodes and their CPUs (Ray only).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "ExecutorInfo",
    "WorkersCollector",
    "workers_by_node",
]

ExecutorInfo = Callable[[], Mapping[str, object]]

_WAITING = "Decode workers waiting for a CPU or for their node to return"


def workers_by_node(info: Mapping[str, object]) -> dict[str, int]:
    """Workers per node (``address/node id``), from an executor's info."""
    nodes = info.get("nodes")
    if not isinstance(nodes, list):
        return {socket.gethostname(): _int(info.get("workers"))}
    return {
        f"{n.get('address')}/{str(n.get('node_id'))[:12]}": _int(n.get("workers"))
        for n in nodes
        if isinstance(n, dict) and n.get("alive")
    }


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


class WorkersCollector(Collector):
    """The executor's workers, busy jobs, restarts and cluster size, read at scrape time."""

    def __init__(self, info: ExecutorInfo) -> None:
        self._info = info

    def describe(self) -> Iterable[Metric]:
        """Nothing at registration: the executor is asked only when Prometheus scrapes."""
        return []

    def collect(self) -> Iterable[Metric]:
        try:
            info = self._info()
        except Exception:  # a scrape must not fail because the executor is closing
            return
        workers = GaugeMetricFamily(
            "svserver_decode_workers", "Decode workers by node", labels=["node"]
        )
        for node, n in sorted(workers_by_node(info).items()):
            workers.add_metric([node], float(n))
        yield workers
        cluster = info.get("cluster")
        counts = cluster if isinstance(cluster, dict) else {}
        gauges = [
            ("svserver_decode_workers_waiting", _WAITING, info.get("workers_waiting")),
            (
                "svserver_decode_jobs_running",
                "Jobs the decode workers are running now",
                info.get("busy"),
            ),
        ]
        if counts:
            gauges += [
                ("svserver_cluster_nodes", "Alive nodes of the cluster", counts.get("nodes")),
                ("svserver_cluster_cpus", "CPUs of the cluster's alive nodes", counts.get("cpus")),
            ]
        for name, text, value in gauges:
            yield GaugeMetricFamily(name, text, value=float(_int(value)))
        yield CounterMetricFamily(
            "svserver_decode_worker_restarts",
            "Decode workers that came back in a new process since svserver started",
            value=float(_int(info.get("restarts"))),
        )
