"""The engine contract: what svserver asks of a speech recogniser, whichever it is.

An engine turns float32 mono 16 kHz audio (a numpy array, samples in
[-1, 1]) into :class:`~svwatchd.model.speechdata.Utterance` objects whose
times are seconds from the start of that array. Everything above this package
(the scheduler, the HTTP service, the worker pool) talks to the
:class:`Engine` protocol only, so the recogniser can change by configuration.

Engines are heavy to load (a model file, a VAD model, thread pools) and cheap
to call, so they are loaded once per worker process by :func:`load_engine` and
kept warm; see :mod:`svwatchd.server._engines.pool`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

from svwatchd.errors import ConfigError, InvalidInputError
from svwatchd.model.speechdata import Utterance, Word

__all__ = [
    "COUNTERS",
    "SAMPLE_RATE",
    "Ask",
    "Audio",
    "Device",
    "Engine",
    "EngineConfig",
    "EngineName",
    "Heard",
    "HearsMany",
    "OnForeign",
    "Task",
    "as_audio",
    "asks_for",
    "load_engine",
    "make_utterance",
    "resolve_device",
]

SAMPLE_RATE = 16000
"""Every engine takes mono audio at this rate; resampling happens before the engine."""

Audio: TypeAlias = npt.NDArray[np.float32]
"""One clip: a 1-D float32 array of samples in [-1, 1] at :data:`SAMPLE_RATE`."""

EngineName: TypeAlias = Literal["whisper", "pocketsphinx"]
Device: TypeAlias = Literal["auto", "cpu", "cuda"]
COUNTERS = (
    "packed_clips",
    "fallback_clips",
    "dropped_segments",
    "language_detections",
    "language_checks",
    "language_mismatches",
)
"""The counters an engine's :meth:`~Engine.info` may hold; several engines' (a router's
models, a pool's workers) add up."""

Task: TypeAlias = Literal["transcribe", "translate"]
OnForeign: TypeAlias = Literal["decode", "hold", "route"]


@dataclass(frozen=True)
class EngineConfig:
    """How to build an engine; the same value is sent to every worker process.

    ``models`` names the models to load: a bundled Whisper model by name
    (``tiny.en``, ``base``: :mod:`~svwatchd.server._engines.bundles`) or a
    directory, used as is (only its digest is reported). Empty means the
    engine's default (Whisper tiny.en, pocketsphinx's en-us); several Whisper
    models are routed by language (:mod:`~svwatchd.server._engines.router`).
    ``cache_dir`` is where a bundled model made of parts is assembled.
    ``compute_type`` None means int8 on CPU and float16 on CUDA.
    ``threads`` is per worker process: on small CPUs several single-threaded
    workers beat one multi-threaded one (see ``default_workers_and_threads``).
    ``verify_model`` checks the bundled Whisper model against recorded
    SHA-256 digests at load, so a damaged install fails loudly at start-up.
    ``model_sha256`` pins an operator's model directory the same way: (file name, hex
    digest) pairs, e.g. read from a ``sha256sum`` manifest. ``nice`` is the
    worker processes' CPU niceness (0..19): decoding is bulk work, so by default
    it yields to the server's own process, and submissions and refreshes are
    answered promptly while every worker is busy; on an otherwise idle CPU the
    workers still get all of it.
    """

    name: EngineName = "whisper"
    models: tuple[str, ...] = ()
    cache_dir: str | None = None
    device: Device = "auto"
    compute_type: str | None = None
    threads: int = 1
    language: str | None = None
    verify_model: bool = True
    model_sha256: tuple[tuple[str, str], ...] = ()
    nice: int = 10
    language_check: bool = True

    def __post_init__(self) -> None:
        if self.name not in ("whisper", "pocketsphinx"):
            raise ConfigError(
                f"unknown engine {self.name!r}; choose whisper or pocketsphinx", key="name"
            )
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"a model is named twice in {list(self.models)}", key="model")
        if self.name == "pocketsphinx" and len(self.models) > 1:
            raise ConfigError("pocketsphinx loads one model directory", key="model")
        if self.model_sha256 and len(self.models) != 1:
            raise ConfigError(
                "a sha256 manifest pins one model directory: give exactly one --model",
                key="model_sha256",
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(
                f"unknown device {self.device!r}; choose auto, cpu or cuda", key="device"
            )
        if isinstance(self.threads, bool) or not isinstance(self.threads, int):
            raise ConfigError(f"threads must be an integer, not {self.threads!r}", key="threads")
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, not {self.threads}", key="threads")
        if (
            isinstance(self.nice, bool)
            or not isinstance(self.nice, int)
            or not 0 <= self.nice <= 19
        ):
            raise ConfigError(f"nice must be an integer 0..19, not {self.nice!r}", key="nice")


@dataclass(frozen=True, slots=True)
class Ask:
    """What is asked of one clip: the language spoken (None: the engine's setting, or
    detect it), the task (``translate``: Whisper's translation into English, multilingual
    models only), what an English-only model does with foreign speech (``on_foreign``:
    decode it flagged, hold it undecoded, route it to a multilingual model), Whisper's
    initial ``prompt`` and the first ``temperature`` of its fallback (None: greedy first).
    A clip with a prompt or a temperature of its own is decoded alone, never packed with
    clips that do not share them."""

    language: str | None = None
    task: Task = "transcribe"
    on_foreign: OnForeign = "decode"
    prompt: str | None = None
    temperature: float | None = None

    @property
    def own_decoding(self) -> bool:
        """True when the clip asks for a prompt or a temperature (it is decoded alone)."""
        return self.prompt is not None or self.temperature is not None


def resolve_device(device: str, compute_type: str | None) -> tuple[str, str]:
    """Turn ``auto`` into cpu or cuda and pick the compute type (int8 CPU, float16 CUDA)."""
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type is None:
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def asks_for(languages: Sequence[str | None] | None, n: int) -> list[Ask]:
    """Plain asks for ``n`` clips in these languages (None: each clip's engine default)."""
    return [Ask(lang) for lang in (languages if languages is not None else [None] * n)]


@dataclass(frozen=True, slots=True)
class Heard:
    """What an engine heard in one clip: its utterances and, when the engine knows it, the
    language spoken (ISO 639-1: a multilingual model's, given or detected; the language an
    English-only model's check found) and how sure a detection was (None when the language
    was given, not detected); the task that wrote the text; ``foreign``, when an
    English-only model's check heard another language: (language, probability); ``held``,
    why the clip was not decoded (``on_foreign: hold``)."""

    utterances: list[Utterance]
    language: str | None = None
    language_probability: float | None = None
    task: Task = "transcribe"
    foreign: tuple[str, float] | None = None
    held: str | None = None


@runtime_checkable
class Engine(Protocol):
    """A loaded, warm recogniser. Not thread-safe: one caller at a time."""

    @property
    def name(self) -> str:
        """The engine's name, as in :attr:`EngineConfig.name`."""
        ...

    @property
    def sample_rate(self) -> int:
        """The sample rate the engine expects (always :data:`SAMPLE_RATE`)."""
        ...

    def info(self) -> dict[str, object]:
        """Facts for sysinfo: engine, model, model_digest, device, compute_type, threads."""
        ...

    def transcribe(self, audio: Audio) -> list[Utterance]:
        """Decode one clip; utterances in time order, times from the clip's start."""
        ...

    def transcribe_many(
        self, clips: Sequence[Audio], languages: Sequence[str | None] | None = None
    ) -> list[list[Utterance]]:
        """Decode independent clips (maybe packed together); result ``i`` is clip ``i``'s.

        ``languages``: each clip's spoken language (a stream's ``language`` tag), or
        None to use the engine's own setting; English-only engines ignore it (the
        server refuses other languages for them at submission).
        """
        ...

    def hear_many(self, clips: Sequence[Audio], asks: Sequence[Ask] | None = None) -> list[Heard]:
        """Decode independent clips as ``asks`` says (one per clip; None: plain asks):
        what was heard in each, in order."""
        ...


class HearsMany:
    """What every engine derives from its :meth:`hear_many`: :meth:`transcribe_many`, the
    utterances alone (engines inherit it, so the two never disagree)."""

    def hear_many(self, clips: Sequence[Audio], asks: Sequence[Ask] | None = None) -> list[Heard]:
        raise NotImplementedError

    def transcribe_many(
        self, clips: Sequence[Audio], languages: Sequence[str | None] | None = None
    ) -> list[list[Utterance]]:
        """Each clip's utterances (:meth:`hear_many`, each clip in its language)."""
        return [h.utterances for h in self.hear_many(clips, asks_for(languages, len(clips)))]


def as_audio(audio: object, *, what: str = "audio") -> Audio:
    """Return ``audio`` as a contiguous 1-D float32 array, or raise InvalidInputError.

    Engines call this on every clip so a wrong shape or a NaN is reported as
    the caller's fault, before a native library sees it.
    """
    if not isinstance(audio, np.ndarray):
        raise InvalidInputError(f"{what} must be a numpy array, not {type(audio).__name__}")
    if audio.ndim != 1:
        raise InvalidInputError(f"{what} must be mono (1-D), not of shape {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise InvalidInputError(f"{what} must be floating point in [-1, 1], not {audio.dtype}")
    out = np.ascontiguousarray(audio, dtype=np.float32)
    if out.size and not np.isfinite(out).all():
        raise InvalidInputError(f"{what} holds NaN or infinite samples")
    return out


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


def make_utterance(
    words: Sequence[tuple[str, float, float, float]], *, limit: float, joiner: str = ""
) -> Utterance | None:
    """Build an Utterance from ``(text, start, end, confidence)`` words, or None if empty.

    Times become plain floats (engines hand out numpy scalars), rounded to
    milliseconds and clamped to [0, ``limit``] (the clip length); starts never
    go backwards, ends never precede starts, and the utterance spans exactly
    its words, so every word lies inside its utterance. Confidences are clamped to
    [0, 1] (engines report slightly above 1 or NaN at the edges); the
    utterance's is the mean of its words'. ``joiner`` joins word texts:
    Whisper's words carry their own leading space, pocketsphinx's do not.
    """
    kept: list[Word] = []
    previous_start = 0.0
    for text, start, end, confidence in words:
        if not text.strip():
            continue
        s = round(_clamp(float(start), previous_start, limit), 3)
        e = round(_clamp(float(end), s, limit), 3)
        c = 0.0 if math.isnan(confidence) else _clamp(float(confidence), 0.0, 1.0)
        kept.append(Word(text.strip(), s, e, round(c, 4)))
        previous_start = s
    if not kept:
        return None
    text = joiner.join(t for t, *_ in words if t.strip()).strip()
    confidence = round(sum(w.confidence for w in kept) / len(kept), 4)
    return Utterance(
        start=kept[0].start,
        end=max(w.end for w in kept),
        text=text,
        confidence=confidence,
        words=tuple(kept),
    )


def load_engine(config: EngineConfig) -> Engine:
    """Load the configured engine (model checks included) and return it warm.

    The engine modules are imported here, not at package import, so that
    importing :mod:`svwatchd.server._engines` stays cheap in processes (the
    server's main process) that never decode.
    """
    if config.name == "whisper":
        from svwatchd.server._engines.bundles import BASE, installed
        from svwatchd.server._engines.router import ModelRouter
        from svwatchd.server._engines.whisper import WhisperEngine

        engines = [WhisperEngine(config, model) for model in config.models or (None,)]
        checks = (
            config.language_check
            and config.cache_dir is not None
            and not any(e.multilingual for e in engines)
            and installed(BASE)
        )
        detector = partial(WhisperEngine, config, BASE.name) if checks else None
        if len(engines) == 1 and detector is None:
            return engines[0]
        return ModelRouter(engines, detector)
    from svwatchd.server._engines.sphinx import SphinxEngine

    return SphinxEngine(config)
