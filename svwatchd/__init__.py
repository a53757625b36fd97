"""svwatchd: drop an audio file into a folder, get speech-recognition results.

The package has three parts: :mod:`svwatchd.client` (Streams and the Server
client), :mod:`svwatchd.server` (svserver, the decoding server) and
:mod:`svwatchd.daemon` (the directory-watching daemon).
"""

from svwatchd.errors import (
    ConfigError,
    InvalidInputError,
    InvalidStreamError,
    ModelIntegrityError,
    ServerError,
    ServerRefusedError,
    ServerUnreachableError,
    StreamsError,
    StreamStateError,
    SvwatchdError,
)

__version__ = "0.1.0"

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
    "__version__",
]
