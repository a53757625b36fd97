"""svwatchd: drop an audio file into a folder, get speech-recognition results.

The package has three parts: :mod:`svwatchd.client` (Streams and the Server
client), :mod:`svwatchd.server` (svserver, the decoding server) and
:mod:`svwatchd.daemon` (the directory-watching daemon), over one shared
model, :mod:`svwatchd.model`. Every exception is in :mod:`svwatchd.errors`,
re-exported here.
"""

from svwatchd.errors import (
    AudioDecodeError,
    ClientClosedError,
    ConfigError,
    ConfigErrors,
    EmptyUploadError,
    EngineError,
    FileChangedError,
    InvalidInputError,
    InvalidStreamError,
    JournalWriteError,
    ModelIntegrityError,
    ParameterError,
    PathNotAllowedError,
    SchemaVersionError,
    ServerError,
    ServerFailedError,
    ServerRefusedError,
    ServerUnavailableError,
    ServerUnreachableError,
    SocketNotAllowedError,
    StateLockedError,
    StreamDeletedError,
    StreamExistsError,
    StreamNotFoundError,
    StreamsError,
    StreamStateError,
    SvwatchdError,
    TooLargeError,
    UnauthorizedError,
    UnknownParameterError,
    WorkerCrashedError,
)

__version__ = "0.1.0"

__all__ = [
    "AudioDecodeError",
    "ClientClosedError",
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
    "__version__",
]
