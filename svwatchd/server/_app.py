"""The svserver application: an app factory whose lifespan wires and opens every part.

Heavy resources (the SQLite store, the engine worker processes, the
scheduler) are opened in the lifespan, never at import time. :func:`_open`
is the one place where svserver's parts are made, each given what it
depends on as constructor arguments; no part is patched after it is made.
At start, streams left ACTIVE by a stop or a crash go back to QUEUED.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import structlog
from fastapi import FastAPI

import svwatchd
from svwatchd.model.enums import DecodeStatus
from svwatchd.server import _api as api
from svwatchd.server._changes import Changes
from svwatchd.server._config import ServerConfig
from svwatchd.server._datadir import DB_NAME
from svwatchd.server._executor import Executor
from svwatchd.server._lifecycle import Lifecycle
from svwatchd.server._live import LiveSessions
from svwatchd.server._longfile import LongFiles
from svwatchd.server._metrics import ServerMetrics
from svwatchd.server._params import Params
from svwatchd.server._records import Listeners, Records
from svwatchd.server._scheduler import Scheduler
from svwatchd.server._service import StreamService
from svwatchd.server._slots import Slots
from svwatchd.server._store import Store
from svwatchd.server._submission import Admission
from svwatchd.server._uploads import Uploads
from svwatchd.server._workermetrics import WorkersCollector

__all__ = ["Engine", "create_app"]

log = structlog.get_logger("svserver")


class Engine(Executor, Protocol):
    """The worker pool as the app holds it: an executor it closes at the end."""

    def close(self, timeout: float = 30.0) -> None:
        """Stop the workers; running jobs are abandoned after ``timeout`` seconds."""


@dataclass(frozen=True)
class _Parts:
    """svserver's parts that need closing, in the order they are closed."""

    metrics: ServerMetrics
    live: LiveSessions
    scheduler: Scheduler
    engine: Engine
    store: Store

    async def close(self) -> None:
        self.metrics.close()
        await self.live.close()
        await self.scheduler.stop()
        self.engine.close(timeout=2.0)  # running jobs are re-queued at the next start
        self.metrics.unbind()
        self.store.close()


async def _open(
    config: ServerConfig, engine_factory: Callable[[ServerConfig], Engine]
) -> tuple[_Parts, api.ApiState]:
    """Make and connect every part of svserver; the scheduler is not started yet."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.data_dir / DB_NAME)
    if store.corrupt_path is not None:
        log.warning(
            "store.damaged",
            corrupt_copy=str(store.corrupt_path),
            detail="the database failed its check and was moved aside; svserver starts empty "
            "and clients submit again what they still need (their ids are theirs)",
        )
    changes = Changes()
    lifecycle = Lifecycle(store, changes)
    requeued = lifecycle.requeue_interrupted()
    if requeued:
        log.info("server.requeued", count=len(requeued))
    engine = await asyncio.to_thread(engine_factory, config)
    workers = _workers(config, engine)
    params = Params(
        store,
        fixed={"engine": config.engine.name, "workers": workers, "models": _models(engine)},
        defaults={"maxactive": config.maxactive or workers, "pack_max": 8},
        on_change=changes.changed,
    )
    slots = Slots(maxactive=lambda: params["maxactive"], on_free=changes.changed)
    metrics = ServerMetrics(stream_counts=store.counts, workers_busy=slots.busy)
    metrics.registry.register(WorkersCollector(engine.info))
    live = LiveSessions(
        store=store,
        lifecycle=lifecycle,
        slots=slots,
        executor=engine,
        spool=config.data_dir / "spool",
    )
    long_files = LongFiles(
        store=store,
        lifecycle=lifecycle,
        slots=slots,
        executor=engine,
        piece_seconds=config.piece_seconds,
    )
    scheduler = Scheduler(
        store=store,
        lifecycle=lifecycle,
        slots=slots,
        executor=engine,
        live=live,
        long_files=long_files,
        changes=changes,
        observer=metrics,
        pack_max=lambda: params["pack_max"],
    )
    uploads = Uploads(config.data_dir / "uploads")
    listeners = Listeners()
    service = StreamService(
        store=store,
        lifecycle=lifecycle,
        admission=Admission(config, uploads, engine.info),
        records=Records(store, listeners),
        listeners=listeners,
        uploads=uploads,
        live=live,
        changes=changes,
    )
    started = time.time()
    state = api.ApiState(
        config=config,
        service=service,
        params=params,
        status=lambda: _status(store, slots, scheduler, started),
        sysinfo=lambda: _sysinfo(config, engine, started),
    )
    return _Parts(metrics, live, scheduler, engine, store), state


def create_app(
    config: ServerConfig, *, engine_factory: Callable[[ServerConfig], Engine] | None = None
) -> FastAPI:
    """Build svserver for ``config``; the worker pool starts when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts, app.state.api = await _open(config, engine_factory or _default_engine)
        if config.metrics is not None:
            try:
                parts.metrics.serve(*config.metrics)
            except OSError as exc:  # metrics are not worth refusing to decode for
                log.error(
                    "metrics.listen_failed",
                    listen=f"{config.metrics[0]}:{config.metrics[1]}",
                    error=str(exc),
                    detail="running without a metrics endpoint",
                )
        parts.scheduler.start()
        log.info("server.ready", listen=f"{config.host}:{config.port}", engine=config.engine.name)
        if parts.engine.info().get("language_check") == "off":
            log.warning(
                "language.check_off",
                detail="svserver's models are English-only and foreign speech will not be "
                "flagged: install svwatchd[multilingual] (or leave out --no-language-check)",
            )
        try:
            yield
        finally:
            log.info("server.stopping")
            await parts.close()

    app = FastAPI(
        title="svserver",
        version=svwatchd.__version__,
        description="Speech decoding server for svwatchd streams.",
        lifespan=lifespan,
    )
    api.install(app, config)
    return app


def _default_engine(config: ServerConfig) -> Engine:
    """The executor svserver was started with: the local worker pool, or Ray actors."""
    if config.ray is not None:
        from svwatchd.server._engines.raydriver import RayDriver

        return RayDriver(config.engine, config.ray, config.data_dir)
    from svwatchd.server._engines import WorkerPool

    return WorkerPool(config.engine, workers=config.workers)


def _workers(config: ServerConfig, engine: Engine) -> int:
    """How many decode workers the executor runs (it may differ from ``--workers``)."""
    told = engine.info().get("workers")
    return told if isinstance(told, int) and told > 0 else config.workers


def _status(store: Store, slots: Slots, scheduler: Scheduler, started: float) -> dict[str, object]:
    counts = store.counts()
    counts.pop(DecodeStatus.DELETED, None)
    uptime = time.time() - started
    return {
        "streams": counts,
        "active": counts.get(DecodeStatus.ACTIVE, 0),
        "queued": counts.get(DecodeStatus.QUEUED, 0),
        "workers_busy": slots.busy(),
        "jobs_done": scheduler.jobs_done,
        "audio_seconds_decoded": scheduler.audio_seconds_decoded,
        "decode_rate": scheduler.audio_seconds_decoded / uptime if uptime > 0 else 0.0,
        "uptime": uptime,
    }


def _sysinfo(config: ServerConfig, engine: Engine, started: float) -> dict[str, object]:
    return {
        "version": svwatchd.__version__,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "workers": _workers(config, engine),
        "engine": engine.info(),
        "uptime": time.time() - started,
        "started": started,
    }


def _models(engine: Engine) -> list[str]:
    """The names of the models the workers hold (a parameter, and in sysinfo)."""
    info = engine.info()
    listed = info.get("models")
    if isinstance(listed, list):
        return [str(m["model"]) for m in listed if isinstance(m, dict)]
    return [str(info.get("model"))]
