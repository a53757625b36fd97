"""Serving a Prometheus registry on its own loopback port, for svserver and the daemon."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

__all__ = ["MetricsEndpoint", "Served"]


class MetricsEndpoint:
    """prometheus_client's HTTP server for one registry, on its own daemon thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.server, self._thread = start_http_server(port, addr=host, registry=registry)

    @property
    def host(self) -> str:
        """The address it is bound to."""
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        """The port it listens on (the real one when asked for port 0)."""
        return int(self.server.server_port)

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(timeout=5.0)
        self.server.server_close()


class Served:
    """Adds ``serve()``/``close()`` of ``/metrics`` to a class that owns ``registry``."""

    registry: CollectorRegistry
    _endpoint: MetricsEndpoint | None = None
    _serve_lock = threading.Lock()

    def serve(self, host: str, port: int) -> MetricsEndpoint:
        """Serve ``/metrics`` on ``host:port`` (port 0: any free port) until :meth:`close`.

        Raises OSError when the address cannot be bound (in use, not local).
        """
        with self._serve_lock:
            if self._endpoint is not None:
                raise RuntimeError(
                    f"metrics already served on {self._endpoint.host}:{self._endpoint.port}"
                )
            self._endpoint = MetricsEndpoint(self.registry, host, port)
            return self._endpoint

    @property
    def endpoint(self) -> MetricsEndpoint | None:
        """The running endpoint, if any."""
        return self._endpoint

    @property
    def server(self) -> WSGIServer | None:
        """The running HTTP server, if any."""
        return None if self._endpoint is None else self._endpoint.server

    def close(self) -> None:
        """Stop the endpoint (if serving); safe to call twice."""
        with self._serve_lock:
            endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close()
