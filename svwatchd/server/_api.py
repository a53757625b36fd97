"""svserver's HTTP API under ``/v1``: the routes, each a thin call into the service.

Routes convert nothing: what goes wrong is raised as a domain error and
answered by the one table of :mod:`~svwatchd.server._httperrors` (400, 401,
404, 409, 413, 422 or 507, never a 500 for bad input). Every route declares
those answers and its own in the OpenAPI document at ``/openapi.json``.
Stream records come as JSON text from the store, so the stream routes send
bytes (:func:`~svwatchd.server._records.answer`) rather than a model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response, StreamingResponse

from svwatchd.server._config import ServerConfig
from svwatchd.server._guards import install_guards
from svwatchd.server._httperrors import RESPONSES, install_error_handlers
from svwatchd.server._openai import openai_router
from svwatchd.server._params import Params
from svwatchd.server._records import answer
from svwatchd.server._schemas import (
    BulkAnswer,
    IdsRequest,
    QueryRequest,
    RecordsAnswer,
    RefreshAnswer,
    ResumeRequest,
    SubmitAnswer,
    SubmitRequest,
    UploadAnswer,
)
from svwatchd.server._service import StreamService, epoch_of

__all__ = [
    "ApiState",
    "install",
    "router",
]

router = APIRouter(prefix="/v1", responses=RESPONSES)


@dataclass(frozen=True)
class ApiState:
    """What the routes use, set by the app's lifespan once every part is open."""

    config: ServerConfig
    service: StreamService
    params: Params
    status: Callable[[], dict[str, object]]
    sysinfo: Callable[[], dict[str, object]]


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.post(
    "/streams", response_model=SubmitAnswer, summary="Submit streams for decoding (idempotent)"
)
async def submit(body: SubmitRequest, request: Request) -> Response:
    records, rejected = _state(request).service.submit([s.to_spec() for s in body.streams])
    return _json(answer(records, rejected=[r.as_dict() for r in rejected]))


@router.put("/uploads/{stream_id}", status_code=201, summary="Upload a file's bytes")
async def upload(stream_id: str, request: Request) -> UploadAnswer:
    state = _state(request)
    limit = state.config.max_upload_bytes
    size = await state.service.upload(stream_id, request.stream(), limit)
    return {"id": stream_id, "bytes": size}


@router.post(
    "/streams/refresh", response_model=RefreshAnswer, summary="States of the given streams"
)
async def refresh(body: IdsRequest, request: Request) -> Response:
    records, missing = _state(request).service.records(body.ids)
    return _json(answer(records, missing=missing))


@router.post(
    "/streams/query",
    response_model=RecordsAnswer,
    summary="Streams not deleted, matching any metadata dict",
)
async def query(body: QueryRequest, request: Request) -> Response:
    return _json(answer(_state(request).service.query(body.match)))


def _bulk(service: StreamService, ids: list[str], results: dict[str, bool]) -> Response:
    records, _ = service.records(ids)
    return _json(answer(records, results=results))


@router.post("/streams/pause", response_model=BulkAnswer, summary="Pause decoding")
async def pause(body: IdsRequest, request: Request) -> Response:
    service = _state(request).service
    return _bulk(service, body.ids, service.pause(body.ids))


@router.post(
    "/streams/resume", response_model=BulkAnswer, summary="Resume decoding, optionally from a time"
)
async def resume(body: ResumeRequest, request: Request) -> Response:
    service = _state(request).service
    return _bulk(service, body.ids, service.resume(body.ids, epoch_of(body.fromtime)))


@router.post(
    "/streams/close", response_model=BulkAnswer, summary="Abort decoding (results so far kept)"
)
async def close(body: IdsRequest, request: Request) -> Response:
    service = _state(request).service
    return _bulk(service, body.ids, service.close(body.ids))


@router.post(
    "/streams/delete",
    response_model=BulkAnswer,
    summary="Close and remove every artifact; keep a tombstone",
)
async def delete(body: IdsRequest, request: Request) -> Response:
    service = _state(request).service
    return _bulk(service, body.ids, service.delete(body.ids))


@router.get("/streams/{stream_id}/utterances", summary="Committed utterances, in time order")
async def utterances(stream_id: str, request: Request) -> dict[str, list[dict[str, object]]]:
    utts = _state(request).service.utterances(stream_id)
    return {"utterances": [u.to_dict() for u in utts]}


@router.get(
    "/streams/{stream_id}/listen",
    summary="Follow utterances as they are decoded (NDJSON, one utterance per line)",
    response_class=StreamingResponse,
)
async def listen(stream_id: str, request: Request) -> StreamingResponse:
    client = request.client
    address = f"{client.host}:{client.port}" if client else "unknown"
    followed = _state(request).service.follow(stream_id, address)

    async def lines() -> AsyncIterator[bytes]:
        async for utt in followed:
            yield (json.dumps(utt.to_dict()) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/params", summary="Server parameters (all, or the named ones)")
async def get_params(
    request: Request, name: Annotated[list[str] | None, Query()] = None
) -> dict[str, dict[str, object]]:
    return {"params": _state(request).params.get(name or [])}


@router.put("/params", summary="Set server parameters")
async def set_params(values: dict[str, object], request: Request) -> dict[str, dict[str, object]]:
    params = _state(request).params
    params.set(values)
    return {"params": params.get([])}


@router.get("/status", summary="Streams by state, decode rate, workers busy")
async def status(request: Request) -> dict[str, object]:
    return _state(request).status()


@router.get("/sysinfo", summary="Version, host, platform, engine and model, uptime")
async def sysinfo(request: Request) -> dict[str, object]:
    return _state(request).sysinfo()


def install(app: FastAPI, config: ServerConfig) -> None:
    """Add the routes (svserver's own and the OpenAI-compatible ones), the error answers
    and the auth and size guards to ``app``."""
    app.include_router(router)
    app.include_router(openai_router)

    @app.get("/healthz", summary="Liveness and readiness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    install_error_handlers(app)
    install_guards(app, config)
