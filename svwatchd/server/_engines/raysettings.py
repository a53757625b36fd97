"""How svserver joins or starts Ray: explicit, light settings, never a bare ``ray.init()``.

``address="local"`` starts a private one-node Ray for the single-machine
case; any other address (``HOST:PORT`` of a head node's GCS) joins that
cluster. A bare ``ray.init()`` would attach silently to whatever cluster runs
on the host, so the address is always passed. A private Ray is started light:
no dashboard, usage stats off, the object store capped (audio travels with
each call and is dropped when the call returns, so a small store is enough),
and its temp dir (logs, sockets, session files) under svserver's data dir.

Ray puts unix sockets in its temp dir (``<temp>/session_<date>_<pid>/sockets/
plasma_store``) and a unix socket path may hold at most 107 bytes, so a data
dir deeper than :data:`MAX_TEMP_DIR` characters cannot hold it: the temp dir
is then ``/tmp/svserver-ray-<digest of the data dir>`` instead, and
:func:`ray_temp_dir` says so (``shortened``) for svserver to log.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from svwatchd.errors import ConfigError

__all__ = [
    "LOCAL",
    "MAX_TEMP_DIR",
    "RaySettings",
    "ray_temp_dir",
]

LOCAL = "local"
"""The address that starts a private one-node Ray instead of joining a cluster."""

MAX_TEMP_DIR = 40
"""Longest temp dir whose session sockets still fit a unix socket path (107 bytes)."""


@dataclass(frozen=True)
class RaySettings:
    """``svserver serve --executor ray``'s options.

    ``workers``: decode actors, one CPU each (None: one per CPU the cluster
    has at start, or per CPU of this machine for a private Ray).
    ``object_store_bytes``: the private Ray's object store (Ray's minimum is
    75 MiB); a joined cluster's nodes set their own with ``ray start``.
    ``max_restarts`` / ``max_task_retries``: how often Ray brings an actor
    back in a new process, and re-runs a call that was running on it.
    """

    address: str = LOCAL
    workers: int | None = None
    object_store_bytes: int = 256 * 1024**2
    max_restarts: int = 4
    max_task_retries: int = 2

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise ConfigError("--ray-address is empty: give HOST:PORT or local", key="ray_address")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(
                f"--ray-workers must be at least 1, not {self.workers}", key="ray_workers"
            )
        if self.object_store_bytes < 75 * 1024**2:
            raise ConfigError("Ray's object store needs at least 75 MiB", key="object_store")
        if self.max_restarts < 1 or not 0 <= self.max_task_retries <= 10:
            raise ConfigError(
                "an actor must be allowed to restart (max_restarts > 0) and retry a call a few "
                "times at most (max_task_retries 0..10)",
                key="max_restarts",
            )

    @property
    def private(self) -> bool:
        """True when svserver starts its own one-node Ray."""
        return self.address == LOCAL


def ray_temp_dir(data_dir: Path) -> tuple[Path, bool]:
    """Where a private Ray keeps its session (and whether it had to leave the data dir).

    ``<data_dir>/ray`` when that path is short enough for Ray's unix sockets,
    else a short dir in /tmp named after the data dir (the same data dir gets
    the same one, so a restart reuses it).
    """
    wanted = Path(os.path.abspath(data_dir)) / "ray"
    if len(str(wanted)) <= MAX_TEMP_DIR:
        return wanted, False
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
    return Path("/tmp") / f"svserver-ray-{digest}", True
