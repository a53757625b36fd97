"""Joining Ray: a private one-node Ray, or an explicit cluster address, checked first.

Never a bare ``ray.init()`` (it attaches silently to whatever cluster runs on
the host): :func:`connect` always passes an address, and the settings of a
private Ray (:mod:`~svwatchd.server._engines.raysettings`). A cluster that
does not answer is a :class:`~svwatchd.errors.ClusterUnreachableError` at
once, not after Ray's own long retries.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import structlog

from svwatchd.errors import ClusterUnreachableError
from svwatchd.model.contract import parse_hostport
from svwatchd.server._engines.raysettings import RaySettings, ray_temp_dir

__all__ = [
    "NAMESPACE",
    "connect",
]

log = structlog.get_logger("svserver.ray")

NAMESPACE = "svserver"
"""Ray namespace svserver's actors live in (apart from other jobs on the cluster)."""


def connect(settings: RaySettings, data_dir: Path, cpus: int) -> Any:
    """Start a private Ray (``local``) or join the cluster at ``settings.address``; the
    ``ray`` module, ready. Never a bare ``ray.init()``: the address is always explicit."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    common: dict[str, Any] = {
        "namespace": NAMESPACE,
        "log_to_driver": False,  # actors' output stays in Ray's session logs
        "configure_logging": False,
    }
    if settings.private:
        temp, shortened = ray_temp_dir(data_dir)
        if shortened:
            log.warning(
                "ray.temp_dir_shortened",
                temp_dir=str(temp),
                detail="under the data dir, Ray's unix socket paths would pass 107 bytes",
            )
        temp.mkdir(parents=True, exist_ok=True)
        ray.init(
            address="local",
            num_cpus=cpus,
            include_dashboard=False,
            object_store_memory=settings.object_store_bytes,
            _temp_dir=str(temp),
            **common,
        )
        return ray
    _probe(settings.address)
    try:
        ray.init(address=settings.address, **common)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        if _refused_token(exc):
            token = _token_source()
            held = f"{token} is not its token" if token else "svserver sent none"
            raise ClusterUnreachableError(
                f"The Ray cluster at {settings.address} refused svserver: it requires Ray's "
                f"auth token and {held}. Start svserver with RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN_PATH naming a file that holds the cluster's token (the one "
                "every node has; `ray get-auth-token` on the head prints it)",
                address=settings.address,
            ) from None
        raise ClusterUnreachableError(
            f"Joining the Ray cluster at {settings.address} failed ({exc}); start its head "
            "node (ray start --head) or fix --ray-address",
            address=settings.address,
        ) from None
    return ray


def _token_source() -> str | None:
    """Where Ray's client takes svserver's auth token from, or None when it sends none.
    Ray sends a token only with ``RAY_AUTH_MODE=token``, which must match the cluster's
    (Ray 2.59 on: a head ``ray start`` makes requires one), so it is the operator's to set."""
    if os.environ.get("RAY_AUTH_MODE") != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "the token in RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"the token in {os.environ['RAY_AUTH_TOKEN_PATH']} (RAY_AUTH_TOKEN_PATH)"
    return f"the token in {Path.home() / '.ray' / 'auth_token'}"


def _refused_token(exc: BaseException) -> bool:
    """Whether joining failed on Ray's token check (the cause Ray wraps in its error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _probe(address: str) -> None:
    """Fail fast, with a clear error, when nothing listens at the cluster's address (Ray's
    own connection attempt retries for a long time first)."""
    try:
        host, port = parse_hostport(address)
    except ValueError:
        host, port = address, None
    if port is None:
        raise ClusterUnreachableError(
            f"--ray-address {address} has no port: give the head node's HOST:PORT "
            "(ray start --head --port, 6379 by default) or local",
            address=address,
        )
    try:
        socket.create_connection((host, port), timeout=5.0).close()
    except OSError as exc:
        raise ClusterUnreachableError(
            f"No Ray cluster answers at {address} ({exc.strerror or exc}); start its head "
            "node (ray start --head) or fix --ray-address",
            address=address,
        ) from None
