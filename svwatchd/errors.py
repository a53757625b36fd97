"""The exceptions svwatchd raises, all under one base.

    SvwatchdError
    ├── InvalidInputError (also ValueError): the caller's input is at fault
    │   ├── InvalidStreamError: a Stream's source or metadata is wrong
    │   │   └── StreamsError: several sources failed at once (``.errors``)
    │   ├── ConfigError: a config or metadata file is wrong (``.file``, ``.line``, ``.key``)
    │   └── ModelIntegrityError: a model file does not match its recorded digest
    ├── StreamStateError: the stream cannot do that now (not submitted, deleted)
    └── ServerError: talking to a speech server failed
        ├── ServerUnreachableError: connection refused, reset or timed out; retrying may help
        └── ServerRefusedError: the server answered 4xx; retrying will not help

Each carries its context as attributes (``source``, ``field``, ``stream_id``,
``status_code``) as well as in its one-sentence message, so callers and log
processors do not have to parse text. Genuine OS failures pass through as the
built-in ``OSError`` family.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "InvalidInputError",
    "InvalidStreamError",
    "ModelIntegrityError",
    "ServerError",
    "ServerRefusedError",
    "ServerUnreachableError",
    "StreamStateError",
    "StreamsError",
    "SvwatchdError",
]


class SvwatchdError(Exception):
    """Base of every error svwatchd raises on purpose."""


class InvalidInputError(SvwatchdError, ValueError):
    """The input given (a source, a field, a file) is at fault, not the system."""


class InvalidStreamError(InvalidInputError):
    """A Stream cannot be made from this source and metadata.

    ``source`` names the file or socket, ``field`` the metadata field at fault
    (``None`` when the source itself is the problem).
    """

    def __init__(self, message: str, *, source: str, field: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.field = field


class StreamsError(InvalidStreamError):
    """Some of several sources could not become Streams.

    ``errors`` lists each failure; ``streams`` holds the Streams that were made,
    so a caller may report the failures and carry on with the rest.
    """

    def __init__(self, errors: Sequence[InvalidStreamError], streams: Sequence[object]) -> None:
        lines = "; ".join(str(e) for e in errors)
        super().__init__(
            f"{len(errors)} of {len(errors) + len(streams)} sources could not become "
            f"streams: {lines}",
            source=", ".join(e.source for e in errors),
        )
        self.errors = list(errors)
        self.streams = list(streams)


class ConfigError(InvalidInputError):
    """A configuration or metadata file is invalid: ``file``, ``line`` and ``key`` say where."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        where = ""
        if file is not None:
            where = file if line is None else f"{file}:{line}"
            where += ": "
        if key is not None:
            where += f"{key}: "
        super().__init__(where + message)
        self.file = file
        self.line = line
        self.key = key


class ModelIntegrityError(InvalidInputError):
    """A speech model file is missing or its SHA-256 digest differs from the recorded one."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class StreamStateError(SvwatchdError):
    """The stream cannot do this in its present state (not yet submitted, or deleted)."""

    def __init__(self, message: str, *, stream_id: str | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class ServerError(SvwatchdError):
    """A request to a speech server failed."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ServerUnreachableError(ServerError):
    """The server could not be reached or did not answer in time; the request may be retried."""


class ServerRefusedError(ServerError):
    """The server refused the request (4xx); ``status_code`` and ``detail`` carry its answer."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        detail: object = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.status_code = status_code
        self.detail = detail
