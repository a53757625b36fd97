"""The OpenAI-compatible routes: ``POST /v1/audio/transcriptions`` and ``GET /v1/models``.

A transcription request is a stream like any other, on the one path every
upload takes: the form's file is written to ``uploads/<id>`` as it arrives
(:class:`~svwatchd.server._multipart.StreamedForm` into
:meth:`~svwatchd.server._service.StreamService.upload`, bounded by
``max_upload_bytes``), submitted as an upload stream tagged ``via: openai``
(its id starts ``openai-``: ``svctl streams`` shows it), queued, packed and
decoded by the scheduler like the rest, and the response waits for it
(:meth:`~svwatchd.server._service.StreamService.finished`). Once it has
finished, its audio is removed (the stream stays listed, with its transcript:
the OpenAI API keeps nothing, and a server answering such requests all day
must not fill its disk). A client that disconnects while it waits has its
stream deleted. The bearer token and the
size limits are the guards' (:mod:`~svwatchd.server._guards`), as for every
``/v1`` route; errors come in OpenAI's shape (:mod:`~svwatchd.server._httperrors`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import Response

from svwatchd.errors import AudioDecodeError, EmptyUploadError
from svwatchd.model.enums import DecodeStatus
from svwatchd.model.languages import language_name
from svwatchd.server._httperrors import RESPONSES
from svwatchd.server._multipart import FormError, StreamedForm
from svwatchd.server._openai_answers import TEXT_TYPE, respond
from svwatchd.server._openai_form import DEFAULT_MODEL, Transcription, TranscriptionForm
from svwatchd.server._store import StreamRow
from svwatchd.server._submission import Rejection, StreamSpec
from svwatchd.server._uploads import probe_format

if TYPE_CHECKING:  # _api installs these routes
    from svwatchd.server._api import ApiState

__all__ = ["openai_router"]

openai_router = APIRouter(prefix="/v1", responses=RESPONSES, tags=["OpenAI-compatible"])

_PARAMS = {  # which form field a refusal of submission is about
    "bad_language": "language",
    "language_unsupported": "language",
    "bad_prompt": "prompt",
    "bad_temperature": "temperature",
    "prompt_unsupported": "prompt",
    "temperature_unsupported": "temperature",
}


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def _models(state: ApiState) -> list[str]:
    listed = state.params.get(["models"])["models"]
    return [str(m) for m in listed] if isinstance(listed, list) else []


@openai_router.get("/models", summary="The models transcriptions may name (OpenAI's list)")
async def models(request: Request) -> dict[str, object]:
    state = _state(request)
    created = int(float(str(state.sysinfo()["started"])))
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "svserver"}
        for name in [DEFAULT_MODEL, *_models(state)]
    ]
    return {"object": "list", "data": data}


@openai_router.post(
    "/audio/transcriptions",
    summary="Transcribe a file (OpenAI's form; waits for the stream)",
    responses={200: {"content": {"application/json": {}, TEXT_TYPE: {}}}},
)
async def transcriptions(request: Request) -> Response:
    state = _state(request)
    service = state.service
    form = TranscriptionForm(models=_models(state))
    body = StreamedForm(
        request.headers.get("content-type", ""),
        request.stream(),
        file_field="file",
        on_field=form.take,
    )
    stream_id = f"openai-{uuid.uuid4().hex}"
    try:
        await service.upload(stream_id, body.file_bytes(), state.config.max_upload_bytes)
    except EmptyUploadError:
        form.asked(body.file)  # a missing model or file is the clearer refusal
        raise FormError("file: the file is empty", field="file", code="invalid_value") from None
    try:
        asked = form.asked(body.file)
        path = service.upload_path(stream_id)
        try:
            fmt = await asyncio.to_thread(probe_format, path, asked.file.filename)
        except AudioDecodeError as exc:
            raise FormError(f"file: {exc}", field="file", code="invalid_file_format") from None
        spec = StreamSpec(
            stream_id,
            "upload",
            fmt,
            dict(asked.tags),
            path=asked.file.filename,
            mtime=time.time(),
        )
        _, rejected = service.submit([spec])
        if rejected:
            raise _refusal(rejected)
    except BaseException:
        service.discard_upload(stream_id)
        raise
    async with _departure(request) as gone:
        row = await service.finished(stream_id, gone)
    if row is None:  # the client left (its stream is deleted), or someone deleted it
        return Response(status_code=499)
    if row.status is DecodeStatus.ERROR:
        raise FormError(
            f"file: {asked.file.filename} could not be transcribed: {row.error or 'no reason'}",
            field="file",
            code="transcription_failed",
        )
    answer = respond(asked, row, service.utterances(stream_id), _language(asked, row))
    service.discard_upload(stream_id)  # the transcript is stored; the audio is not needed
    return answer


@asynccontextmanager
async def _departure(request: Request) -> AsyncIterator[Callable[[], Awaitable[bool]]]:
    """Whether the client has gone, once its body was read: a task waits for the next
    ASGI message, which can only be the disconnect. (``Request.is_disconnected`` polls
    with a cancelled scope, which behind svserver's middleware never lets the server
    resume reading the socket, so it never sees the client close it.)"""
    watcher = asyncio.ensure_future(request.receive())

    async def gone() -> bool:
        return watcher.done()

    try:
        yield gone
    finally:
        watcher.cancel()


def _refusal(rejected: Sequence[Rejection]) -> FormError:
    first = rejected[0]
    return FormError(first.message, field=_PARAMS.get(first.code), code=first.code)


def _language(asked: Transcription, row: StreamRow) -> str:
    """The language the audio was heard in: a multilingual model's (given or detected),
    else the one asked for, else English (an English-only model hears nothing else)."""
    code = row.heard_language or asked.language or "en"
    return code if language_name(code) else "en"
