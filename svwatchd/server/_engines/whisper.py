"""The Whisper engine: faster-whisper (CTranslate2) with its bundled Silero VAD.

Why it is built the way it is (measured on 2 CPU cores, tiny.en int8):

* Silero VAD (shipped inside the faster-whisper wheel, nothing downloaded)
  cuts speech before Whisper sees it; silence, noise, tones and most music
  therefore never reach the decoder and cannot be hallucinated into "Thank
  you.". What it does pass (a sung line of hold music) meets the guard below.
* Whisper's encoder always costs a 30 s window, so a 2 s clip costs as much
  as a 30 s one (about 6x real time on the card clips one by one).
  :meth:`WhisperEngine.transcribe_many` packs the speech of several short
  clips into shared windows with :data:`PACK_GAP_S` of digital silence
  between them, decodes each window once (one encoder pass:
  :mod:`~svwatchd.server._engines.onepass`) and hands the words back to their
  clips by their timestamps (about 4x the throughput). Packing is verified
  (:func:`svwatchd.server._engines.packing.attribute`); a clip that fails the
  check is decoded alone.
* Greedy decoding: beam 5 gave the same word error rate on the test speech
  and was slower. ``condition_on_previous_text`` is off, so one bad window
  cannot poison the next and packed clips do not prompt each other.
* A word that begins speech after a pause starts where the VAD hears the
  speech begin (:mod:`~svwatchd.server._engines.onsets`): Whisper's own
  start for it is often 0.1-0.3 s off.
* On CPU the temperature fallback's candidates are decoded one at a time
  (:mod:`~svwatchd.server._engines.sampling`): as one batch they copied the
  window's encoder state once each, a worker's highest memory peak.
* Invented text is dropped: :mod:`svwatchd.server._engines.guard` judges
  every decoded segment, alone or packed (live segments are decoded alone),
  by Whisper's no-speech, log-probability and compression-ratio signals.
  A segment dropped in a packed window sends the clips it touched to be
  decoded alone, so a neighbour's speech is never dropped with it.
  ``info()["dropped_segments"]`` counts the drops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from svwatchd.errors import ConfigError, EngineError
from svwatchd.model.speechdata import Utterance
from svwatchd.server._engines import langid
from svwatchd.server._engines.base import (
    SAMPLE_RATE,
    Ask,
    Audio,
    EngineConfig,
    Heard,
    HearsMany,
    Task,
    as_audio,
    make_utterance,
    resolve_device,
)
from svwatchd.server._engines.bundles import BUNDLES, TINY_EN, bundle_dir
from svwatchd.server._engines.guard import (
    COMPRESSION_RATIO_THRESHOLD,
    LOG_PROB_THRESHOLD,
    NO_SPEECH_THRESHOLD,
    fallback_temperatures,
    screen,
)
from svwatchd.server._engines.heap import TrimsBeforeEncode
from svwatchd.server._engines.model import (
    digest_model_dir,
    verify_model,
)
from svwatchd.server._engines.onepass import OnePass
from svwatchd.server._engines.onsets import snap_onsets
from svwatchd.server._engines.packing import (
    LONG_CLIP_S,
    PACK_GAP_S,
    PACK_WINDOW_S,
    attribute,
    clip_utterances,
    loops,
    plan_windows,
    timed_words,
    touched,
    window_audio,
)
from svwatchd.server._engines.sampling import OneAtATime
from svwatchd.server._engines.vad import VAD_NAME, load_vad, speech_chunks

__all__ = ["BEAM_SIZE", "SAMPLING_SEED", "WhisperEngine"]

log = logging.getLogger(__name__)

BEAM_SIZE = 1
"""Greedy: on tiny.en/CPU beam 5 bought no accuracy on the test speech and cost ~10 %."""


_DECODING: dict[str, Any] = {
    "beam_size": BEAM_SIZE,
    "word_timestamps": True,
    "condition_on_previous_text": False,
    "no_speech_threshold": NO_SPEECH_THRESHOLD,
    "log_prob_threshold": LOG_PROB_THRESHOLD,
}
"""faster-whisper settings shared by clips decoded alone and packed windows."""

SAMPLING_SEED = 0
"""Seed of the temperature fallback's sampling, set when an engine loads. CTranslate2 keeps
one random generator per thread, seeded on its first use, and offers no way to reset it:
a worker's decodes are reproducible from its start, but a window that needs the fallback
can read differently when decoded again later or on another worker (measured: 2 of 11
one-minute pieces of a test recording, decoded twice in one worker)."""

_REQUIRED_FILES = ("config.json", "model.bin", "tokenizer.json")
"""Files an operator's model directory must hold (the vocabulary comes in several forms)."""


def _seed() -> None:
    """Seed the temperature fallback's sampling (:data:`SAMPLING_SEED`) before the first
    decode (it seeds the generator of each CTranslate2 thread that has none yet)."""
    import ctranslate2

    ctranslate2.set_random_seed(SAMPLING_SEED)


class WhisperEngine(HearsMany):
    """Whisper through faster-whisper, loaded once and kept warm.

    Each Whisper segment becomes an Utterance whose words carry Whisper's own
    casing and punctuation; confidences are word probabilities.
    """

    name = "whisper"
    sample_rate = SAMPLE_RATE

    def __init__(self, config: EngineConfig, model: str | None = None) -> None:
        """Load ``model`` (a bundled model's name or a directory; default: the first of
        ``config.models``, else tiny.en), its files checked against their digests."""
        from faster_whisper import WhisperModel

        self.config = config
        model = model or (config.models[0] if config.models else TINY_EN.name)
        bundle = BUNDLES.get(model)
        if bundle is not None:
            model_dir = bundle_dir(bundle, config.cache_dir)
            model_name = bundle.name
            self._verified = config.verify_model
            if config.verify_model:
                self._digest = verify_model(model_dir, bundle.files)
            else:
                self._digest = digest_model_dir(model_dir)
        else:
            model_dir = Path(model)
            if not model_dir.is_dir():
                raise ConfigError(
                    f"{model_dir} is neither a model svserver ships ({', '.join(BUNDLES)}) "
                    "nor a model directory",
                    key="model",
                )
            # faster-whisper fetches a missing tokenizer from the Hub: refuse instead.
            missing = [n for n in _REQUIRED_FILES if not (model_dir / n).is_file()]
            if missing:
                raise ConfigError(
                    f"{model_dir} is not a CTranslate2 Whisper model: {', '.join(missing)} missing",
                    key="model",
                )
            model_name = model_dir.name
            self._verified = bool(config.model_sha256)
            if config.model_sha256:
                self._digest = verify_model(model_dir, dict(config.model_sha256))
            else:
                self._digest = digest_model_dir(model_dir)
        self._model_dir = model_dir
        self._model_name = model_name
        self._device, self._compute_type = resolve_device(config.device, config.compute_type)

        self._vad_options = load_vad()
        _seed()

        try:
            self._model: Any = WhisperModel(
                os.fspath(model_dir),
                device=self._device,
                compute_type=self._compute_type,
                cpu_threads=config.threads,
                num_workers=1,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineError(
                f"cannot load the Whisper model in {model_dir} on {self._device} "
                f"({self._compute_type}): {exc}"
            ) from exc
        if self._device == "cpu":  # a worker's memory; on a GPU both are the device's
            self._model.model = OneAtATime(TrimsBeforeEncode(self._model.model))
        self._multilingual = bool(self._model.model.is_multilingual)
        if not self._multilingual:
            if config.language not in (None, "en"):
                raise ConfigError(
                    f"the model {model_name} is English-only; language "
                    f"{config.language!r} cannot be decoded with it",
                    key="language",
                )
            self._language: str | None = "en"
        else:
            self._language = config.language
        self._onepass = OnePass(
            self._model,
            temperature=fallback_temperatures(None),
            compression_ratio_threshold=None,  # a packed window is judged clip by clip
            **_DECODING,
        )
        self.packed_clips = 0
        self.fallback_clips = 0
        self.dropped_segments = 0
        # One decode of silence: allocates CTranslate2's buffers before the first request.
        self._segments(np.zeros(SAMPLE_RATE, dtype=np.float32), vad=False, language="en")

    @property
    def multilingual(self) -> bool:
        """True for a model that hears many languages (and can tell which it hears)."""
        return self._multilingual

    def detect_language(self, clip: Audio) -> tuple[str, float] | None:
        """The language spoken in the clip's first 30 s of speech and its probability
        (:func:`~svwatchd.server._engines.langid.detect`); None without speech or for an
        English-only model."""
        speech = self._speech(clip)
        return None if speech is None else langid.detect(self._model, speech)

    def foreign_language(self, clip: Audio) -> tuple[str, float] | None:
        """The language of the clip's first 30 s of speech when it is not English, with its
        probability (:func:`~svwatchd.server._engines.langid.foreign`); None for English,
        too little speech, or an English-only model."""
        speech = self._speech(clip)
        return None if speech is None else langid.foreign(self._model, speech)

    def _speech(self, clip: Audio) -> Audio | None:
        """The clip's first 30 s of speech, as the VAD finds it (so leading silence or
        music cannot decide its language); None without speech or for an English-only
        model (it cannot tell languages apart)."""
        if not self._multilingual:
            return None
        audio = as_audio(clip)
        chunks = speech_chunks(audio, self._vad_options)
        if not chunks:
            return None
        return np.concatenate([audio[a:b] for a, b in chunks])[: 30 * SAMPLE_RATE]

    def info(self) -> dict[str, object]:
        """Engine, model, digest, device and decoding facts, for sysinfo and logs."""
        return {
            "engine": self.name,
            "model": self._model_name,
            "model_dir": os.fspath(self._model_dir),
            "model_digest": self._digest,
            "model_verified": self._verified,
            "device": self._device,
            "compute_type": self._compute_type,
            "threads": self.config.threads,
            "language": self._language or "detect",
            "multilingual": self._multilingual,
            "language_check": "not needed" if self._multilingual else "off",
            "models": [
                {
                    "model": self._model_name,
                    "multilingual": self._multilingual,
                    "model_digest": self._digest,
                    "model_verified": self._verified,
                }
            ],
            "sample_rate": self.sample_rate,
            "vad": VAD_NAME,
            "beam_size": BEAM_SIZE,
            "packed_clips": self.packed_clips,
            "fallback_clips": self.fallback_clips,
            "dropped_segments": self.dropped_segments,
        }

    def _segments(
        self,
        audio: Audio,
        *,
        vad: bool,
        language: str | None = None,
        ask: Ask | None = None,
    ) -> tuple[list[Any], str | None, float | None]:
        """Whisper's raw segments, the language they are in (a multilingual model's, given
        or detected; None for English-only) and a detection's probability (None when the
        language was given). The guard's thresholds drive the temperature fallback too;
        ``ask`` gives the task, the initial prompt and the fallback's first temperature."""
        ask = ask or Ask()
        segments, info = self._model.transcribe(
            audio,
            language=language or self._language,
            task=ask.task if self._multilingual else "transcribe",
            initial_prompt=ask.prompt,
            temperature=fallback_temperatures(ask.temperature),
            vad_filter=vad,
            vad_parameters=self._vad_options,
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
            **_DECODING,
        )
        decoded = list(segments)
        if not self._multilingual:
            return decoded, None, None
        given = (language or self._language) is not None
        return decoded, str(info.language), None if given else float(info.language_probability)

    def _screen(self, segments: list[Any], *, packed: bool = False) -> tuple[list[Any], list[Any]]:
        """The segments the guard keeps and drops; drops are counted, logged at debug only.
        A ``packed`` window's repetition is judged clip by clip, not here."""
        screened = screen(segments, repetition=not packed)
        if screened.dropped:
            self.dropped_segments += len(screened.dropped)
            log.debug("guard dropped %s", [(s.text, rule) for s, rule in screened.dropped])
        return screened.kept, [s for s, _rule in screened.dropped]

    def transcribe(self, audio: Audio) -> list[Utterance]:
        """Decode one clip on its own: VAD, then Whisper on the speech it kept."""
        clip = as_audio(audio)
        return self._solo(clip).utterances

    def _solo(self, clip: Audio, language: str | None = None, ask: Ask | None = None) -> Heard:
        """One clip decoded alone, in ``language`` as ``ask`` says (task, prompt, temperature)."""
        ask = ask or Ask()
        task: Task = ask.task if self._multilingual else "transcribe"
        limit = len(clip) / SAMPLE_RATE
        out: list[Utterance] = []
        segments, heard, probability = self._segments(clip, vad=True, language=language, ask=ask)
        kept, _dropped = self._screen(segments)
        timed = [[(w.word, w.start, w.end, w.probability) for w in s.words or ()] for s in kept]
        for words in snap_onsets(timed, clip):
            utterance = make_utterance(words, limit=limit)
            if utterance is not None:
                out.append(replace(utterance, language=heard))
        out.sort(key=lambda u: u.start)
        return Heard(out, heard, probability, task)

    def hear_many(self, clips: Sequence[Audio], asks: Sequence[Ask] | None = None) -> list[Heard]:
        """Decode independent clips, packing short ones into shared 30 s windows.

        Only the speech the VAD finds is packed, so a long recording with a
        few seconds of speech packs too. Clips without speech get no
        utterances and are never decoded; clips with more than
        :data:`LONG_CLIP_S` of speech, clips left in a window of their own,
        and every clip when a multilingual model must detect the language
        (one window must hold one language and one task), clips with a prompt or a
        temperature of their own (:attr:`Ask.own_decoding`) are decoded alone, as are clips
        whose packed words fail the attribution check twice (the second time
        packed again among themselves, in the other order, with twice the gap).
        """
        audios = [as_audio(c, what=f"clip {i}") for i, c in enumerate(clips)]
        results: list[Heard | None] = [None] * len(audios)
        wanted = list(asks) if asks is not None else [Ask()] * len(audios)
        # English-only models speak English whatever the tag; others use the clip's
        # language, else the configured one, else detect it (and decode alone)
        langs = [
            self._language if not self._multilingual else (a.language or self._language)
            for a in wanted
        ]
        tasks: list[Task] = [a.task if self._multilingual else "transcribe" for a in wanted]
        speech: list[list[tuple[int, int]]] = [[] for _ in audios]
        for lang, task in {(x, t) for x, t in zip(langs, tasks, strict=True) if x is not None}:
            group = [
                i
                for i, x in enumerate(langs)
                if x == lang and tasks[i] == task and not wanted[i].own_decoding
            ]
            if len(group) < 2:
                continue
            for i in group:
                speech[i] = speech_chunks(audios[i], self._vad_options)
                if not speech[i]:
                    results[i] = Heard([])
            failed = self._pack(audios, speech, results, group, PACK_GAP_S, (lang, task))
            if len(failed) > 1:
                # Second chance before a 30 s window each: the failed clips again, in the
                # other order (new neighbours) and with twice the silence between them.
                self._pack(audios, speech, results, failed[::-1], 2 * PACK_GAP_S, (lang, task))
        for i, r in enumerate(results):
            if r is None:
                if speech[i]:
                    self.fallback_clips += 1  # it had speech, yet is decoded alone
                results[i] = self._solo(audios[i], langs[i], wanted[i])
        return [r if r is not None else Heard([]) for r in results]

    def _pack(
        self,
        audios: Sequence[Audio],
        speech: Sequence[list[tuple[int, int]]],
        results: list[Heard | None],
        order: Iterable[int],
        gap_s: float,
        how: tuple[str, Task],
    ) -> list[int]:
        """Decode the clips of ``order`` packed, in ``how``'s language and task; fill
        ``results``; return those that failed."""
        language, task = how
        picked = [i for i in order if results[i] is None]
        windows = plan_windows(
            [speech[i] for i in picked], gap_s=gap_s, window_s=PACK_WINDOW_S, long_s=LONG_CLIP_S
        )
        failed: list[int] = []
        local = [audios[i] for i in picked]
        for window in windows:
            if len(window) < 2:
                continue
            decoded = self._onepass.segments(window_audio(window, local), language, task)
            heard = language if self._multilingual else None
            kept, dropped = self._screen(decoded, packed=True)
            per_clip, bad = attribute(window, timed_words(kept))
            bad |= touched(window, [(s.start, s.end) for s in dropped])
            bad |= loops(per_clip)  # a clip whose own text loops is decoded alone
            for p in window:
                clip = picked[p.index]
                if p.index in bad:
                    failed.append(clip)
                    continue
                self.packed_clips += 1
                utts = clip_utterances(per_clip[p.index], len(audios[clip]))
                results[clip] = Heard([replace(u, language=heard) for u in utts], heard, None, task)
            if bad:
                log.debug("packed words failed the check for clips %s", bad)
        return failed
