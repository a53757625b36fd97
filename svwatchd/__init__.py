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
    EngineError,
    FileChangedError,
    InvalidInputError,
    InvalidStreamError,
    JournalWriteError,
    ModelIntegrityError,
    PathNotAllowedError,
    SchemaVersionError,
    ServerError,
    ServerFailedError,
    ServerRefusedError,
    ServerUnavailableError,
    ServerUnreachableError,
    SocketNotAllowedError,
    StateLockedError,
    StreamsError,
    StreamStateError,
    SvwatchdError,
    WorkerCrashedError,
)

__version__ = "0.1.0"

__all__ = [
    "AudioDecodeError",
    "ClientClosedError",
    "ConfigError",
    "ConfigErrors",
    "EngineError",
    "FileChangedError",
    "InvalidInputError",
    "InvalidStreamError",
    "JournalWriteError",
    "ModelIntegrityError",
    "PathNotAllowedError",
    "SchemaVersionError",
    "ServerError",
    "ServerFailedError",
    "ServerRefusedError",
    "ServerUnavailableError",
    "ServerUnreachableError",
    "SocketNotAllowedError",
    "StateLockedError",
    "StreamStateError",
    "StreamsError",
    "SvwatchdError",
    "WorkerCrashedError",
    "__version__",
]
