"""Domain errors become HTTP answers through one table; every status is declared."""

from __future__ import annotations

import json

import pytest

from svwatchd.errors import (
    AudioDecodeError,
    EmptyUploadError,
    ParameterError,
    StreamDeletedError,
    StreamExistsError,
    StreamNotFoundError,
    SvwatchdError,
    TooLargeError,
    UnauthorizedError,
    UnknownParameterError,
)
from svwatchd.server._httperrors import ANSWERS, RESPONSES, error_response


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (UnknownParameterError("no such", name="x"), 400, "unknown_param"),
        (ParameterError("read-only", name="engine"), 400, "bad_param"),
        (EmptyUploadError("empty", stream_id="s"), 400, "empty"),
        (AudioDecodeError("a.wav", "bad header"), 400, "bad_request"),  # via InvalidInputError
        (UnauthorizedError("missing or wrong bearer token"), 401, "unauthorized"),
        (StreamNotFoundError("no stream s", stream_id="s"), 404, "not_found"),
        (StreamDeletedError("stream s was deleted", stream_id="s"), 409, "deleted"),
        (StreamExistsError("stream s exists", stream_id="s"), 409, "exists"),
        (TooLargeError("too big", limit=10), 413, "too_large"),
    ],
)
def test_the_most_specific_answer_wins(exc: Exception, status: int, code: str) -> None:
    response = error_response(exc)
    assert response.status_code == status
    assert json.loads(bytes(response.body)) == {"error": {"code": code, "message": str(exc)}}


def test_every_answer_is_declared_and_only_domain_errors_are_answered() -> None:
    assert {status for status, _ in ANSWERS.values()} <= set(RESPONSES)
    assert set(RESPONSES) == {400, 401, 404, 409, 413, 422, 507}
    with pytest.raises(SvwatchdError):  # not the caller's fault: a 500, not a guess
        error_response(SvwatchdError("a bug"))
