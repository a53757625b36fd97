"""The svserver application: an app factory whose lifespan opens the store and the workers.

Heavy resources (the SQLite store, the engine worker processes, the
scheduler) are opened in the lifespan, never at import time. At start,
streams left ACTIVE by a stop or a crash go back to QUEUED.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI

import svwatchd
from svwatchd.server import api
from svwatchd.server.config import ServerConfig
from svwatchd.server.metrics import ServerMetrics
from svwatchd.server.scheduler import Executor, Scheduler
from svwatchd.server.service import StreamService
from svwatchd.server.store import Store

__all__ = ["Params", "create_app"]

log = structlog.get_logger("svserver")


class Params:
    """The server's tunable parameters: validated, persisted, and read by the scheduler."""

    def __init__(self, store: Store, fixed: Mapping[str, Any], defaults: Mapping[str, int]):
        self._store = store
        self._fixed = dict(fixed)  # read-only facts (engine, workers)
        self._values = dict(defaults)
        self._values.update(
            {k: v for k, v in store.params().items() if k in defaults and isinstance(v, int)}
        )

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def get(self, names: Iterable[str]) -> dict[str, Any]:
        """The named parameters (all when none are named); KeyError names an unknown one."""
        everything = {**self._fixed, **self._values}
        names = list(names)
        for n in names:
            if n not in everything:
                raise KeyError(f"unknown parameter {n!r}; known: {', '.join(sorted(everything))}")
        return {n: everything[n] for n in names} if names else everything

    def set(self, values: Mapping[str, Any]) -> None:
        """Validate every value first, then store them all (nothing changes on error)."""
        for name, value in values.items():
            if name in self._fixed:
                raise ValueError(f"parameter {name!r} is read-only (set it when starting svserver)")
            if name not in self._values:
                known = ", ".join(sorted({*self._fixed, *self._values}))
                raise KeyError(f"unknown parameter {name!r}; known: {known}")
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
                raise ValueError(f"parameter {name!r} must be an integer 1..1024, not {value!r}")
        self._store.set_params(values)
        self._values.update(values)


def create_app(
    config: ServerConfig, *, executor_factory: Callable[[ServerConfig], Any] | None = None
) -> FastAPI:
    """Build svserver for ``config``; the worker pool starts when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(config.data_dir / "svserver.db")
        requeued = store.requeue_interrupted()
        if requeued:
            log.info("server.requeued", count=len(requeued))
        factory = executor_factory or _default_executor
        import asyncio

        executor = await asyncio.to_thread(factory, config)
        service = StreamService(config, store)
        service.engine_info = executor.info
        params = Params(
            store,
            fixed={"engine": config.engine.name, "workers": config.workers},
            defaults={"maxactive": config.maxactive or config.workers, "pack_max": 8},
        )
        scheduler = Scheduler(
            service,
            executor,
            maxactive=lambda: int(params["maxactive"]),
            pack_max=lambda: int(params["pack_max"]),
        )
        from svwatchd.server.live import LiveSessions

        live = LiveSessions(service, scheduler, executor)
        scheduler.start_live = live.start
        service.on_stop.append(live.stop)
        started = time.time()
        app.state.config = config
        app.state.service = service
        app.state.params = params
        app.state.status = lambda: _status(store, scheduler, started)
        app.state.sysinfo = lambda: _sysinfo(config, executor, started)
        metrics = ServerMetrics(
            stream_counts=store.counts,
            workers_busy=lambda: scheduler.busy + len(scheduler.live),
        )
        scheduler.metrics = metrics
        if config.metrics is not None:
            try:
                metrics.serve(*config.metrics)
            except OSError as exc:  # metrics are not worth refusing to decode for
                log.error(
                    "metrics.listen_failed",
                    listen=f"{config.metrics[0]}:{config.metrics[1]}",
                    error=str(exc),
                    detail="running without a metrics endpoint",
                )
        scheduler.start()
        log.info("server.ready", listen=f"{config.host}:{config.port}", engine=config.engine.name)
        try:
            yield
        finally:
            log.info("server.stopping")
            metrics.close()
            await live.close()
            await scheduler.stop()
            executor.close(timeout=2.0)  # running jobs are re-queued at the next start
            metrics.unbind()
            store.close()

    app = FastAPI(
        title="svserver",
        version=svwatchd.__version__,
        description="Speech decoding server for svwatchd streams.",
        lifespan=lifespan,
    )
    api.install(app)
    app.add_middleware(api.BodyLimit, limit=config.max_request_bytes)
    return app


def _default_executor(config: ServerConfig) -> Executor:
    from svwatchd.server.engines import WorkerPool

    pool: Executor = WorkerPool(config.engine, workers=config.workers)
    return pool


def _status(store: Store, scheduler: Scheduler, started: float) -> dict[str, Any]:
    counts = store.counts()
    counts.pop("DELETED", None)
    uptime = time.time() - started
    return {
        "streams": counts,
        "active": counts.get("ACTIVE", 0),
        "queued": counts.get("QUEUED", 0),
        "workers_busy": scheduler.busy + len(scheduler.live),
        "jobs_done": scheduler.jobs_done,
        "audio_seconds_decoded": scheduler.audio_seconds_decoded,
        "decode_rate": scheduler.audio_seconds_decoded / uptime if uptime > 0 else 0.0,
        "uptime": uptime,
    }


def _sysinfo(config: ServerConfig, executor: Any, started: float) -> dict[str, Any]:
    return {
        "version": svwatchd.__version__,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "workers": config.workers,
        "engine": executor.info(),
        "uptime": time.time() - started,
        "started": started,
    }
