"""svserver's engine layer: float32 mono 16 kHz audio in, Utterances out, on warm workers.

Nothing outside this package needs to know which recogniser runs: the server
builds an :class:`EngineConfig`, starts a :class:`WorkerPool` and submits
clips. The engines themselves (``whisper.WhisperEngine``,
``sphinx.SphinxEngine``) are imported only by :func:`load_engine`, inside the
worker processes, so importing this package does not load faster-whisper,
CTranslate2 or pocketsphinx.
"""

from svwatchd.server._engines.base import (
    SAMPLE_RATE,
    Audio,
    Engine,
    EngineConfig,
    EngineName,
    load_engine,
)
from svwatchd.server._engines.bundles import BUNDLES, TINY_EN, Bundle, bundle_dir
from svwatchd.server._engines.model import (
    combined_digest,
    digest_model_dir,
    verify_model,
)
from svwatchd.server._engines.pool import (
    WorkerPool,
    default_workers_and_threads,
)

__all__ = [
    "BUNDLES",
    "SAMPLE_RATE",
    "TINY_EN",
    "Audio",
    "Bundle",
    "Engine",
    "EngineConfig",
    "EngineName",
    "WorkerPool",
    "bundle_dir",
    "combined_digest",
    "default_workers_and_threads",
    "digest_model_dir",
    "load_engine",
    "verify_model",
]
