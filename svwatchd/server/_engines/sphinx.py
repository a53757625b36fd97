"""The pocketsphinx engine: the en-us model its wheel ships, cut by its own endpointer.

pocketsphinx 5 provides an ``Endpointer`` (WebRTC-style VAD with hysteresis:
a 0.3 s window, 90 % of frames to switch). Each stretch of speech it returns
is decoded as one utterance with ``full_utt=True``, so the whole stretch is
searched at once. Word times come from the decoder's segmentation (frames of
1/``frate`` s, end frame inclusive) offset by the stretch's start.

The Endpointer also takes hold music, ringback and pink noise for speech
(alone they came out as "enjoy", "thigh thigh", "of of"), and pocketsphinx
has no no-speech signal of its own. So a stretch is decoded only if the
Silero VAD the Whisper engine uses (:mod:`svwatchd.server._engines.vad`)
finds speech in it; it finds none in the test corpus's tones, chords or
noise (``tests/nonspeech.py``). Silero does not cut the stretches: on
telephone-band audio (8 kHz, mu-law) it misses the first second of a card
clip that the Endpointer keeps ("eight of spades" lost). Left as they are:
non-speech that follows speech with no pause the Endpointer hears is in the
speech's stretch and is decoded with it, and a sung line, which Silero
takes for speech, is decoded as words.

Confidences are the word posteriors from the lattice. In the 5.x binding
``Segment.prob`` is already a linear probability (``logmath.exp`` applied),
and log-table rounding puts some just above 1 (1.0001, 1.0005), so they are
clamped to [0, 1]. Fillers (``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``,
``[SPEECH]``, ``++...++``) are dropped and alternate pronunciations
(``was(2)``) lose their suffix.

pocketsphinx wants 16-bit PCM: the float samples are clipped to [-1, 1] and
scaled by 32767 with rounding (so a decode of int16 audio read by the
project's own reader round-trips exactly).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from svwatchd.errors import ConfigError, EngineError
from svwatchd.model.speechdata import Utterance
from svwatchd.server._engines.base import (
    SAMPLE_RATE,
    Ask,
    Audio,
    EngineConfig,
    Heard,
    HearsMany,
    as_audio,
    make_utterance,
)
from svwatchd.server._engines.model import digest_model_dir
from svwatchd.server._engines.vad import VAD_NAME, load_vad, speech_chunks

__all__ = ["SphinxEngine", "find_sphinx_model", "is_filler", "to_pcm16"]

_ALTERNATE = re.compile(r"\(\d+\)$")


def is_filler(word: str) -> bool:
    """Whether a decoder token is a filler rather than a word (``<sil>``, ``[NOISE]`` ...)."""
    return word.startswith(("<", "[", "++")) or not word


def to_pcm16(audio: Audio) -> bytes:
    """Float samples in [-1, 1] as 16-bit little-endian PCM (clipped, rounded)."""
    scaled = np.rint(np.clip(audio, -1.0, 1.0) * 32767.0)
    return bytes(scaled.astype("<i2").tobytes())


def find_sphinx_model(model_dir: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """Find (acoustic model dir, language model, dictionary) in an operator's model dir.

    The directory must hold exactly one acoustic model folder (the one with
    ``mdef``), one language model (``*.lm.bin``, ``*.lm`` or ``*.arpa``) and
    one ``*.dict``: the layout of pocketsphinx's own ``model/en-us``.
    """
    root = Path(model_dir)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a model directory", key="model_dir")
    hmms = sorted(p for p in root.iterdir() if (p / "mdef").is_file())
    lms = sorted(
        p for p in root.iterdir() if p.is_file() and p.name.endswith((".lm.bin", ".lm", ".arpa"))
    )
    dicts = sorted(p for p in root.iterdir() if p.is_file() and p.suffix == ".dict")
    for what, found in (("acoustic model folder", hmms), ("language model", lms)):
        if len(found) != 1:
            raise ConfigError(
                f"{root} must hold exactly one {what}, found {len(found)}", key="model_dir"
            )
    if len(dicts) != 1:
        raise ConfigError(
            f"{root} must hold exactly one *.dict, found {len(dicts)}", key="model_dir"
        )
    return hmms[0], lms[0], dicts[0]


class SphinxEngine(HearsMany):
    """pocketsphinx with its Endpointer and the Silero VAD's veto, loaded once and kept warm."""

    name = "pocketsphinx"
    sample_rate = SAMPLE_RATE

    def __init__(self, config: EngineConfig) -> None:
        import pocketsphinx

        self.config = config
        model_dir = config.models[0] if config.models else None
        if model_dir is None:
            root = Path(pocketsphinx.get_model_path("en-us"))
            hmm, lm, dictionary = root / "en-us", root / "en-us.lm.bin", root / "cmudict-en-us.dict"
            self._model_name = "en-us"
        else:
            hmm, lm, dictionary = find_sphinx_model(model_dir)
            root = Path(model_dir)
            self._model_name = root.name
        self._model_dir = root
        # No digests are recorded for pocketsphinx's model: it is reported, not verified.
        self._digest = digest_model_dir(root)
        try:
            self._decoder: Any = pocketsphinx.Decoder(
                hmm=os.fspath(hmm),
                lm=os.fspath(lm),
                dict=os.fspath(dictionary),
                samprate=SAMPLE_RATE,
                loglevel="ERROR",
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineError(f"cannot load the pocketsphinx model in {root}: {exc}") from exc
        self._frate = int(self._decoder.config["frate"])
        self._endpointer_class: Any = pocketsphinx.Endpointer
        self._vad_options = load_vad()

    def info(self) -> dict[str, object]:
        """Engine, model and digest facts (pocketsphinx is single-threaded, CPU only)."""
        return {
            "engine": self.name,
            "model": self._model_name,
            "model_dir": os.fspath(self._model_dir),
            "model_digest": self._digest,
            "model_verified": False,
            "device": "cpu",
            "compute_type": "float32",
            "threads": 1,
            "language": "en",
            "sample_rate": self.sample_rate,
            "vad": f"pocketsphinx Endpointer (window 0.3 s, ratio 0.9, loose); {VAD_NAME} veto",
        }

    def _stretches(self, pcm: bytes) -> list[tuple[float, bytes]]:
        """Cut PCM into speech stretches with the Endpointer: (start seconds, pcm)."""
        endpointer = self._endpointer_class(sample_rate=SAMPLE_RATE)
        size = int(endpointer.frame_bytes)
        stretches: list[tuple[float, bytes]] = []
        pending: list[bytes] = []
        start = 0.0
        for pos in range(0, len(pcm), size):
            frame = pcm[pos : pos + size]
            last = pos + size >= len(pcm)
            speech = endpointer.end_stream(frame) if last else endpointer.process(frame)
            if speech is None:
                continue
            if not pending:
                start = float(endpointer.speech_start)
            pending.append(bytes(speech))
            if not endpointer.in_speech:
                stretches.append((start, b"".join(pending)))
                pending = []
        if pending:  # the stream ended inside speech
            stretches.append((start, b"".join(pending)))
        return stretches

    def transcribe(self, audio: Audio) -> list[Utterance]:
        """Decode one clip: one utterance per stretch of speech that holds words."""
        clip = as_audio(audio)
        limit = len(clip) / SAMPLE_RATE
        heard = [
            (a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in speech_chunks(clip, self._vad_options)
        ]
        out: list[Utterance] = []
        for start, pcm in self._stretches(to_pcm16(clip)):
            end = start + len(pcm) / (2 * SAMPLE_RATE)
            if not any(a < end and b > start for a, b in heard):
                continue  # no speech in it for Silero: tones, music or noise
            self._decoder.start_utt()
            self._decoder.process_raw(pcm, full_utt=True)
            self._decoder.end_utt()
            words = [
                (
                    _ALTERNATE.sub("", seg.word),
                    start + seg.start_frame / self._frate,
                    start + (seg.end_frame + 1) / self._frate,
                    float(seg.prob),
                )
                for seg in self._decoder.seg()
                if not is_filler(seg.word)
            ]
            utterance = make_utterance(words, limit=limit, joiner=" ")
            if utterance is not None:
                out.append(utterance)
        return out

    def hear_many(self, clips: Sequence[Audio], asks: Sequence[Ask] | None = None) -> list[Heard]:
        """Decode each clip in turn (pocketsphinx has no fixed window to share); en-us hears
        no language but its own, so none is claimed."""
        checked = [as_audio(c, what=f"clip {i}") for i, c in enumerate(clips)]
        return [Heard(self.transcribe(c)) for c in checked]
