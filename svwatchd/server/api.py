"""svserver's HTTP API under ``/v1``: routes, errors and auth, mapped in one place.

Every route declares its error responses in the OpenAPI document at
``/openapi.json``; errors are ``{"error": {"code", "message"}}`` with 400, 401,
404, 409, 413, 422 or 507, never a 500 for bad input.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from svwatchd.errors import InvalidInputError
from svwatchd.server.schemas import (
    ErrorBody,
    IdsRequest,
    QueryRequest,
    ResumeRequest,
    SubmitRequest,
)
from svwatchd.server.service import StreamService, _Gone, epoch_of

__all__ = [
    "ApiError",
    "BodyLimit",
    "install",
    "router",
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "Bad request: a value is wrong (the message names it)",
        401: "Missing or wrong bearer token",
        404: "No such stream",
        409: "Conflict: the id was deleted or belongs to another source",
        413: "Request body too large",
        422: "Body does not match the schema (fields listed)",
        507: "The server's disk is full; retry when space returns",
    }.items()
}

router = APIRouter(prefix="/v1", responses=_ERRORS)


class ApiError(Exception):
    """An error answered as JSON with an HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status)


def _service(request: Request) -> StreamService:
    service: StreamService = request.app.state.service
    return service


def _stream_or_404(service: StreamService, stream_id: str) -> None:
    row = service.store.one(stream_id)
    if row is None:
        raise ApiError(404, "not_found", f"no stream {stream_id}")


@router.post("/streams", summary="Submit streams for decoding (idempotent by id)")
async def submit(body: SubmitRequest, request: Request) -> Response:
    try:
        specs = [s.to_spec() for s in body.streams]
    except ValueError as exc:
        raise ApiError(400, "bad_format", str(exc)) from None
    records, rejected = _service(request).submit(specs)
    return _records(records, rejected=[r.as_dict() for r in rejected])


@router.put("/uploads/{stream_id}", status_code=201, summary="Upload a file's bytes")
async def upload(stream_id: str, request: Request) -> dict[str, Any]:
    service = _service(request)
    limit: int = request.app.state.config.max_upload_bytes
    try:
        target = service.upload_path(stream_id)
    except InvalidInputError as exc:
        raise ApiError(409, "exists", str(exc)) from None
    part = target.with_name(target.name + ".part")
    size = 0
    try:
        with open(part, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "too_large", f"upload exceeds {limit} bytes")
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if size == 0:
            raise ApiError(400, "empty", f"upload for {stream_id} is empty")
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return {"id": stream_id, "bytes": size}


@router.post("/streams/refresh", summary="States of the given streams (one request)")
async def refresh(body: IdsRequest, request: Request) -> Response:
    records, missing = _service(request).records(body.ids)
    return _records(records, missing=missing)


@router.post("/streams/query", summary="Streams not deleted, matching any metadata dict")
async def query(body: QueryRequest, request: Request) -> Response:
    return _records(_service(request).query(body.match))


def _records(records: list[str], **rest: Any) -> Response:
    """``{"streams": [...], **rest}`` around records that are JSON text already."""
    extra = "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in rest.items())
    body = '{"streams":[' + ",".join(records) + "]" + extra + "}"
    return Response(body, media_type="application/json")


def _bulk_answer(service: StreamService, ids: list[str], results: dict[str, bool]) -> Response:
    records, _ = service.records(ids)
    return _records(records, results=results)


@router.post("/streams/pause", summary="Pause decoding")
async def pause(body: IdsRequest, request: Request) -> Response:
    service = _service(request)
    return _bulk_answer(service, body.ids, service.pause(body.ids))


@router.post("/streams/resume", summary="Resume decoding, optionally from a time")
async def resume(body: ResumeRequest, request: Request) -> Response:
    service = _service(request)
    fromtime = epoch_of(body.fromtime)
    return _bulk_answer(service, body.ids, service.resume(body.ids, fromtime))


@router.post("/streams/close", summary="Abort decoding (results so far are kept)")
async def close(body: IdsRequest, request: Request) -> Response:
    service = _service(request)
    return _bulk_answer(service, body.ids, service.close(body.ids))


@router.post("/streams/delete", summary="Close and remove every artifact; keep a tombstone")
async def delete(body: IdsRequest, request: Request) -> Response:
    service = _service(request)
    return _bulk_answer(service, body.ids, service.delete(body.ids))


@router.get("/streams/{stream_id}/utterances", summary="Committed utterances, in time order")
async def utterances(stream_id: str, request: Request) -> dict[str, Any]:
    service = _service(request)
    _stream_or_404(service, stream_id)
    try:
        utts = service.utterances(stream_id)
    except _Gone:
        raise ApiError(409, "deleted", f"stream {stream_id} was deleted") from None
    return {"utterances": [u.to_dict() for u in utts]}


@router.get(
    "/streams/{stream_id}/listen",
    summary="Follow utterances as they are decoded (NDJSON, one utterance per line)",
    response_class=StreamingResponse,
)
async def listen(stream_id: str, request: Request) -> StreamingResponse:
    service = _service(request)
    _stream_or_404(service, stream_id)
    client = request.client
    address = f"{client.host}:{client.port}" if client else "unknown"

    async def lines() -> AsyncIterator[bytes]:
        async for utt in service.listen(stream_id, address):
            yield (json.dumps(utt.to_dict()) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/params", summary="Server parameters (all, or the named ones)")
async def get_params(
    request: Request, name: Annotated[list[str] | None, Query()] = None
) -> dict[str, Any]:
    params = request.app.state.params
    try:
        return {"params": params.get(name or [])}
    except KeyError as exc:
        raise ApiError(400, "unknown_param", str(exc.args[0])) from None


@router.put("/params", summary="Set server parameters")
async def set_params(values: dict[str, Any], request: Request) -> dict[str, Any]:
    params = request.app.state.params
    try:
        params.set(values)
    except (KeyError, ValueError) as exc:
        raise ApiError(400, "bad_param", str(exc.args[0])) from None
    _service(request).poke()
    return {"params": params.get([])}


@router.get("/status", summary="Streams by state, decode rate, workers busy")
async def status(request: Request) -> dict[str, Any]:
    result: dict[str, Any] = request.app.state.status()
    return result


@router.get("/sysinfo", summary="Version, host, platform, engine and model, uptime")
async def sysinfo(request: Request) -> dict[str, Any]:
    result: dict[str, Any] = request.app.state.sysinfo()
    return result


class BodyLimit:
    """ASGI middleware: a JSON body longer than ``limit`` is answered 413, chunked or not.

    The Content-Length check in ``guard`` refuses honest large requests early;
    this one reads (at most ``limit`` bytes of) any other body before the app
    sees it. Uploads stream through: their route counts and refuses by itself.
    """

    def __init__(self, app: Any, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/v1/uploads/"):
            await self.app(scope, receive, send)
            return
        messages = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await JSONResponse(
                    {
                        "error": {
                            "code": "too_large",
                            "message": f"request body exceeds {self.limit} bytes",
                        }
                    },
                    413,
                )(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replayed() -> Any:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)


def install(app: FastAPI) -> None:
    """Add the routes, the error handlers and the auth and size guards to ``app``."""
    app.include_router(router)

    @app.get("/healthz", summary="Liveness and readiness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(f['loc'])}: {f['msg']}" for f in fields[:5])
        return _error(422, "invalid", f"request does not match the schema: {where}", fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http", str(exc.detail))

    @app.exception_handler(sqlite3.OperationalError)
    async def disk(_: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        if "full" in str(exc):
            return _error(507, "disk_full", f"svserver's disk is full: {exc}; retry later")
        raise exc

    @app.exception_handler(OSError)
    async def oserror(_: Request, exc: OSError) -> JSONResponse:
        import errno

        if exc.errno == errno.ENOSPC:
            return _error(507, "disk_full", f"svserver's disk is full: {exc}; retry later")
        raise exc

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        config = request.app.state.config
        if request.url.path.startswith("/v1/"):
            auth = request.headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else None
            if not config.token_ok(token):
                return _error(401, "unauthorized", "missing or wrong bearer token")
            length = request.headers.get("content-length")
            is_upload = request.url.path.startswith("/v1/uploads/")
            limit = config.max_upload_bytes if is_upload else config.max_request_bytes
            if length is not None and (not length.isdigit() or int(length) > limit):
                return _error(413, "too_large", f"request body exceeds {limit} bytes")
        response: Response = await call_next(request)
        return response
