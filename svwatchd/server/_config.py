"""svserver's settings, and the allow-lists that guard what it may read and connect to."""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from svwatchd.errors import ConfigError, PathNotAllowedError, SocketNotAllowedError
from svwatchd.model.contract import DEFAULT_PORT
from svwatchd.server._engines.base import EngineConfig
from svwatchd.server._engines.raysettings import RaySettings
from svwatchd.server._pieces import PIECE_SECONDS

__all__ = [
    "ServerConfig",
]


@dataclass(frozen=True)
class ServerConfig:
    """Everything svserver is started with."""

    data_dir: Path = Path("svserver-data")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allow_roots: tuple[Path, ...] = ()
    allow_sockets: tuple[tuple[str, int | None], ...] = ()
    workers: int = 1
    engine: EngineConfig = field(default_factory=EngineConfig)
    token: str | None = None
    max_upload_bytes: int = 2 * 1024**3
    max_request_bytes: int = 32 * 1024**2
    maxactive: int | None = None
    piece_seconds: float = PIECE_SECONDS  # a long file is decoded in pieces this long at most
    metrics: tuple[str, int] | None = None  # where /metrics listens (Prometheus), if anywhere
    ray: RaySettings | None = None  # decode workers as Ray actors (--executor ray); None: local

    def __post_init__(self) -> None:
        if not 10 <= self.piece_seconds <= 600:
            raise ConfigError(
                f"piece length must be 10 to 600 seconds, not {self.piece_seconds}",
                key="piece_seconds",
            )
        roots = tuple(Path(os.path.realpath(r)) for r in self.allow_roots)
        object.__setattr__(self, "allow_roots", roots)
        object.__setattr__(
            self, "allow_sockets", tuple((h.lower(), p) for h, p in self.allow_sockets)
        )

    def check_path(self, path: str) -> Path:
        """Return the resolved path if it lies under an allowed root, else raise.

        ``..`` components and symlinks are resolved first, so neither can escape.
        """
        if not os.path.isabs(path):
            raise PathNotAllowedError(f"Path {path!r} is not absolute; send an absolute path")
        resolved = os.path.realpath(path)
        if _under(resolved, os.path.realpath(self.data_dir)):
            raise PathNotAllowedError(
                f"Path {path} resolves to {resolved}, inside svserver's own data directory "
                f"({self.data_dir}); refused"
            )
        for root in self.allow_roots:
            if _under(resolved, str(root)):
                return Path(resolved)
        real = Path(resolved)
        roots = ", ".join(str(r) for r in self.allow_roots) or "none configured"
        raise PathNotAllowedError(
            f"Path {path} resolves to {real}, outside the server's allowed roots ({roots}); "
            "start svserver with --allow-root covering it, or upload the file"
        )

    def check_socket(self, host: str, port: int) -> None:
        """Raise unless ``host:port`` is allowed by ``--allow-socket``."""
        h = host.lower()
        for allowed_host, allowed_port in self.allow_sockets:
            if h == allowed_host and allowed_port in (None, port):
                return
        raise SocketNotAllowedError(
            f"Socket source {host}:{port} is not allowed; start svserver with "
            f"--allow-socket {host} (or {host}:{port})"
        )

    def token_ok(self, presented: str | None) -> bool:
        """Constant-time check of a bearer token (always true when no token is configured)."""
        if self.token is None:
            return True
        if presented is None:
            return False
        return hmac.compare_digest(presented.encode(), self.token.encode())


def _under(path: str, top: str) -> bool:
    """``path`` is ``top`` or lies below it (both resolved; string compare, no syscalls)."""
    return path == top or path.startswith(top if top.endswith("/") else top + "/")
