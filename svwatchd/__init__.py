"""svwatchd: drop an audio file into a folder, get speech-recognition results.

The package has three parts: :mod:`svwatchd.client` (Streams and the Server
client), :mod:`svwatchd.server` (svserver, the decoding server) and
:mod:`svwatchd.daemon` (the directory-watching daemon), over one shared
model, :mod:`svwatchd.model`. Every exception is in :mod:`svwatchd.errors`,
re-exported here.
"""

from svwatchd import errors as _errors
from svwatchd.errors import *  # noqa: F403  (every exception, by design)

__version__ = "0.1.0"

__all__ = [*_errors.__all__, "__version__"]
