"""svserver's request guards: the bearer token, and the size of request bodies.

They run before routing, as middleware, so their refusals are answered
directly (401, 413), with the same table as every other error (in OpenAI's
shape on the OpenAI-compatible routes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from svwatchd.errors import TooLargeError, UnauthorizedError
from svwatchd.server._config import ServerConfig
from svwatchd.server._httperrors import error_response

__all__ = ["STREAMED", "UPLOADS", "BodyLimit", "install_guards"]

UPLOADS = "/v1/uploads/"
"""Where uploads go: their bodies stream through, counted by the upload itself."""

STREAMED = (UPLOADS, "/v1/audio/transcriptions")
"""Routes whose bodies carry a file's bytes: they stream through to disk, bounded by
``max_upload_bytes`` (the upload counts and refuses by itself), never read whole."""


class BodyLimit:
    """ASGI middleware: a JSON body longer than ``limit`` is answered 413, chunked or not.

    The Content-Length check of :func:`install_guards` refuses honest large
    requests early; this one reads (at most ``limit`` bytes of) any other body
    before the app sees it. Uploads stream through: their route counts and
    refuses by itself.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(STREAMED):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                refusal = TooLargeError(
                    f"request body exceeds {self.limit} bytes", limit=self.limit
                )
                await error_response(refusal, scope["path"])(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)


def install_guards(app: FastAPI, config: ServerConfig) -> None:
    """Refuse ``/v1`` requests without the right token, or with a body too large."""

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path.startswith("/v1/"):
            auth = request.headers.get("authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else None
            if not config.token_ok(token):
                return error_response(UnauthorizedError("missing or wrong bearer token"), path)
            length = request.headers.get("content-length")
            streamed = path.startswith(STREAMED)
            limit = config.max_upload_bytes if streamed else config.max_request_bytes
            if length is not None and (not length.isdigit() or int(length) > limit):
                refusal = TooLargeError(f"request body exceeds {limit} bytes", limit=limit)
                return error_response(refusal, path)
        return await call_next(request)

    app.add_middleware(BodyLimit, limit=config.max_request_bytes)
