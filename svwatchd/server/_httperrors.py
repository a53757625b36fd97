"""svserver's errors as HTTP answers: one table from domain error to status and code.

Routes and the service raise the errors of :mod:`svwatchd.errors`; nothing
converts them on the way. Here each is answered as
``{"error": {"code", "message"}}`` with its status: the most specific class
listed wins (a subclass of a listed class gets its parent's answer). Besides
the table: a body that does not match its schema is 422 ``invalid`` (with the
fields), an unknown route or method keeps its status (``http``), and a full
disk is 507 ``disk_full`` (retry later). Anything else is a bug: 500.

The OpenAI-compatible routes (:data:`OPENAI_PATHS`) get the same statuses and
codes in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``,
so an OpenAI client reads them as it reads the real API's; the path of the
request picks the shape, here and in the guards.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from svwatchd.errors import (
    EmptyUploadError,
    InvalidInputError,
    InvalidStreamError,
    ParameterError,
    StreamDeletedError,
    StreamExistsError,
    StreamNotFoundError,
    TooLargeError,
    UnauthorizedError,
    UnknownParameterError,
)
from svwatchd.server._schemas import ErrorBody

__all__ = [
    "ANSWERS",
    "OPENAI_PATHS",
    "RESPONSES",
    "answer",
    "error_response",
    "install_error_handlers",
]

ANSWERS: Mapping[type[Exception], tuple[int, str]] = {
    InvalidInputError: (400, "bad_request"),
    InvalidStreamError: (400, "bad_format"),  # a submitted format that contradicts itself
    ParameterError: (400, "bad_param"),
    UnknownParameterError: (400, "unknown_param"),
    EmptyUploadError: (400, "empty"),
    UnauthorizedError: (401, "unauthorized"),
    StreamNotFoundError: (404, "not_found"),
    StreamDeletedError: (409, "deleted"),
    StreamExistsError: (409, "exists"),
    TooLargeError: (413, "too_large"),
}
"""Domain error -> (HTTP status, machine-readable code)."""

_MEANING = {
    400: "Bad request: a value is wrong (the message names it)",
    401: "Missing or wrong bearer token",
    404: "No such stream",
    409: "Conflict: the id was deleted, belongs to another source, or exists already",
    413: "Request body too large",
    422: "Body does not match the schema (fields listed)",
    507: "The server's disk is full; retry when space returns",
}

RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _MEANING.items()
}
"""Every error answer a ``/v1`` route may give, for the OpenAPI document."""


OPENAI_PATHS = ("/v1/audio/", "/v1/models")
"""Where the OpenAI-compatible routes are: their errors come in OpenAI's shape."""


def answer(
    status: int,
    code: str,
    message: str,
    *,
    path: str = "",
    param: str | None = None,
    **extra: object,
) -> JSONResponse:
    """An error answer: svserver's shape, or OpenAI's for a path under :data:`OPENAI_PATHS`
    (``type`` ``invalid_request_error`` for a 4xx, ``server_error`` for a 5xx; ``param``
    names the form field at fault when one is)."""
    if path.startswith(OPENAI_PATHS):
        kind = "server_error" if status >= 500 else "invalid_request_error"
        if status == 401:
            code = "invalid_api_key"
        body = {"message": message, "type": kind, "param": param, "code": code}
        return JSONResponse({"error": body}, status)
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status)


def error_response(exc: Exception, path: str = "") -> JSONResponse:
    """The answer to a domain error of :data:`ANSWERS` (the most specific class listed), in
    the shape ``path`` calls for."""
    for cls in type(exc).__mro__:
        if cls in ANSWERS:
            status, code = ANSWERS[cls]
            own = getattr(exc, "code", None)  # a form's refusal says its own reason
            param = getattr(exc, "field", None)
            return answer(status, own or code, str(exc), path=path, param=param)
    raise exc


def _disk_full(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of the table, schema mismatches, HTTP errors and a full disk."""

    async def domain(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, request.url.path)

    for cls in ANSWERS:
        app.add_exception_handler(cls, domain)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        where = "; ".join(f"{'.'.join(f['loc'])}: {f['msg']}" for f in fields[:5])
        message = f"request does not match the schema: {where}"
        return answer(422, "invalid", message, path=request.url.path, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return answer(exc.status_code, "http", str(exc.detail), path=request.url.path)

    async def disk(request: Request, exc: Exception) -> JSONResponse:
        if _disk_full(exc):
            message = f"svserver's disk is full: {exc}; retry later"
            return answer(507, "disk_full", message, path=request.url.path)
        raise exc

    app.add_exception_handler(sqlite3.OperationalError, disk)
    app.add_exception_handler(OSError, disk)
