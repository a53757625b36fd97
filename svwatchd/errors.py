"""The exceptions svwatchd raises, all under one base, all defined here.

    SvwatchdError
    ├── InvalidInputError (also ValueError): the caller's input is at fault; retrying will not help
    │   ├── InvalidStreamError: a Stream's source or metadata is wrong (``source``, ``field``)
    │   │   └── StreamsError: several sources failed at once (``errors``, ``streams``)
    │   ├── AudioDecodeError: audio cannot be decoded (``source``, ``problem``)
    │   ├── ConfigError: a config or metadata file is wrong (``file``, ``line``, ``key``)
    │   │   └── ConfigErrors: every problem of one config file (``errors``)
    │   ├── ModelIntegrityError: a model file does not match its recorded digest (``path``)
    │   ├── PathNotAllowedError: a path outside svserver's ``--allow-root`` directories
    │   ├── SocketNotAllowedError: a socket address not on svserver's ``--allow-socket`` list
    │   ├── ParameterError: a server parameter is unknown, read-only or out of range (``name``)
    │   │   └── UnknownParameterError: no server parameter has that name
    │   ├── EmptyUploadError: an upload had no bytes (``stream_id``)
    │   └── TooLargeError: a request or upload exceeds svserver's limit (``limit``)
    ├── StreamStateError: the stream cannot do that now (not submitted, deleted) (``stream_id``)
    │   ├── StreamNotFoundError: the server has no stream with that id
    │   ├── StreamDeletedError: the stream was deleted; only its id remains (a tombstone)
    │   └── StreamExistsError: the stream exists already, so its upload is fixed
    ├── UnauthorizedError: a request to svserver had no bearer token or a wrong one
    ├── ClientClosedError: the ``Server`` client was closed
    ├── ServerError: talking to a speech server failed (``url``)
    │   ├── ServerUnavailableError: retrying later may help
    │   │   ├── ServerUnreachableError: no answer (refused, reset, timed out)
    │   │   └── ServerFailedError: the server answered 5xx, e.g. 507 disk full (``status_code``)
    │   └── ServerRefusedError: the server answered 4xx (``status_code``, ``detail``)
    ├── EngineError: a speech engine or its worker failed (not the caller's input)
    │   ├── WorkerCrashedError: a worker process died mid-job; the job may run again
    │   └── ClusterError: svserver's Ray cluster cannot run its decode workers (``address``)
    │       ├── ClusterUnreachableError: no Ray cluster answers at that address
    │       └── WorkersRefusedError: no actor could load the engine (``nodes``: node -> why)
    ├── FileChangedError: a file changed while it was being hashed (``path``, ``detail``)
    ├── StateLockedError: another process uses this state directory (``lock_path``, ``pid``)
    ├── SchemaVersionError: a database was written by a newer version (``path``, ``found``)
    └── JournalWriteError: a journal write failed and was rolled back (``path``, ``free_bytes``)

Each carries its context as attributes as well as in its one-sentence
message, so callers and log processors do not have to parse text. Genuine OS
failures pass through as the built-in ``OSError`` family.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AudioDecodeError",
    "ClientClosedError",
    "ClusterError",
    "ClusterUnreachableError",
    "ConfigError",
    "ConfigErrors",
    "EmptyUploadError",
    "EngineError",
    "FileChangedError",
    "InvalidInputError",
    "InvalidStreamError",
    "JournalWriteError",
    "ModelIntegrityError",
    "ParameterError",
    "PathNotAllowedError",
    "SchemaVersionError",
    "ServerError",
    "ServerFailedError",
    "ServerRefusedError",
    "ServerUnavailableError",
    "ServerUnreachableError",
    "SocketNotAllowedError",
    "StateLockedError",
    "StreamDeletedError",
    "StreamExistsError",
    "StreamNotFoundError",
    "StreamStateError",
    "StreamsError",
    "SvwatchdError",
    "TooLargeError",
    "UnauthorizedError",
    "UnknownParameterError",
    "WorkerCrashedError",
    "WorkersRefusedError",
]


class SvwatchdError(Exception):
    """Base of every error svwatchd raises on purpose."""


# -- the input is at fault --------------------------------------------------------------


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


class AudioDecodeError(InvalidInputError):
    """An audio source cannot be decoded; ``source`` names it, ``problem`` says why."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"Cannot decode {source}: {problem}")
        self.source = source
        self.problem = problem

    def __reduce__(self) -> tuple[type[AudioDecodeError], tuple[str, str]]:
        # Rebuild from the attributes, so the error survives pickling (process pools).
        return type(self), (self.source, self.problem)


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


class ConfigErrors(ConfigError):
    """Every problem found in one config file; ``errors`` lists them, one per message line."""

    def __init__(self, errors: Sequence[ConfigError], *, file: str | None = None) -> None:
        lines = "".join(f"\n  {e}" for e in errors)
        super().__init__(f"{len(errors)} problem(s):{lines}", file=file)
        self.errors = list(errors)


class ModelIntegrityError(InvalidInputError):
    """A speech model file is missing or its SHA-256 digest differs from the recorded one."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class PathNotAllowedError(InvalidInputError):
    """A file path lies outside every ``--allow-root`` (after resolving ``..`` and symlinks)."""


class SocketNotAllowedError(InvalidInputError):
    """A socket address is not on the ``--allow-socket`` list."""


class ParameterError(InvalidInputError):
    """A server parameter cannot be set to that: unknown, read-only or out of range (``name``)."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class UnknownParameterError(ParameterError):
    """No server parameter has the name asked for (``name``)."""


class EmptyUploadError(InvalidInputError):
    """An upload carried no bytes: there is nothing to decode (``stream_id``)."""

    def __init__(self, message: str, *, stream_id: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class TooLargeError(InvalidInputError):
    """A request body or an upload is larger than svserver accepts (``limit``, in bytes)."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


# -- the state of a stream or a client ----------------------------------------------------


class StreamStateError(SvwatchdError):
    """The stream cannot do this in its present state (not yet submitted, or deleted)."""

    def __init__(self, message: str, *, stream_id: str | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class StreamNotFoundError(StreamStateError):
    """The server has no stream with this id (never submitted, or submitted elsewhere)."""


class StreamDeletedError(StreamStateError):
    """The stream was deleted: its results are gone and its id cannot be used again."""


class StreamExistsError(StreamStateError):
    """The stream exists already, so what it was created from (its upload) cannot change."""


class UnauthorizedError(SvwatchdError):
    """A request to svserver carried no bearer token, or not the one it was started with."""


class ClientClosedError(SvwatchdError):
    """The ``Server`` client was closed; make a new one."""


# -- talking to a server --------------------------------------------------------------------


class ServerError(SvwatchdError):
    """A request to a speech server failed."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ServerUnavailableError(ServerError):
    """The server could not do the request now; the same request may be retried later."""


class ServerUnreachableError(ServerUnavailableError):
    """The server could not be reached or did not answer in time."""


class ServerFailedError(ServerUnavailableError):
    """The server answered 5xx (``status_code``): e.g. 507, its disk is full."""

    def __init__(self, message: str, *, status_code: int, url: str | None = None) -> None:
        super().__init__(message, url=url)
        self.status_code = status_code


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


# -- engines ----------------------------------------------------------------------------------


class EngineError(SvwatchdError):
    """The engine or one of its worker processes failed (not the caller's input)."""


class WorkerCrashedError(EngineError):
    """A worker process died before finishing a job; the job may be submitted again."""


class ClusterError(EngineError):
    """svserver's decode workers cannot run on its Ray cluster (``address``: the cluster's)."""

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


class ClusterUnreachableError(ClusterError):
    """No Ray cluster answers at ``address``: start it (``ray start --head``) or fix the address."""


class WorkersRefusedError(ClusterError):
    """No decode actor could start: each node's refusal (e.g. its model files differ) is in
    ``nodes`` (node name -> the actor's error message)."""

    def __init__(self, message: str, *, address: str, nodes: dict[str, str]) -> None:
        super().__init__(message, address=address)
        self.nodes = nodes


# -- files and durable state --------------------------------------------------------------------


class FileChangedError(SvwatchdError):
    """The file changed (or was replaced) while it was being hashed: wait, then try again.

    ``path`` names the file; ``detail`` says which stat fields moved.
    """

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"File {path} changed while it was being hashed ({detail}); retry later")
        self.path = path
        self.detail = detail


class StateLockedError(SvwatchdError):
    """Another process holds this state directory's lock (``lock_path``; its ``pid`` if known)."""

    def __init__(self, program: str, lock_path: str, pid: int | None, remedy: str) -> None:
        who = f"PID {pid}" if pid is not None else "an unknown PID"
        super().__init__(f"Another {program} ({who}) holds the lock {lock_path}; {remedy}")
        self.lock_path = lock_path
        self.pid = pid


class SchemaVersionError(SvwatchdError):
    """A database carries a newer schema (``found``) than this code knows (``supported``)."""

    def __init__(self, program: str, path: str, found: int, supported: int, remedy: str) -> None:
        super().__init__(
            f"{path} has schema version {found}, newer than this {program}'s {supported}; "
            f"upgrade {program} or {remedy}"
        )
        self.path = path
        self.found = found
        self.supported = supported


class JournalWriteError(SvwatchdError):
    """A journal write failed (disk full, failed fsync) and was rolled back: nothing changed.

    ``path`` is the database, ``free_bytes`` the free space there (None if unknown).
    """

    def __init__(self, path: str, free_bytes: int | None, cause: BaseException) -> None:
        free = "unknown" if free_bytes is None else f"{free_bytes} bytes"
        super().__init__(
            f"Journal write to {path} failed and was rolled back ({cause}); free space {free}"
        )
        self.path = path
        self.free_bytes = free_bytes
