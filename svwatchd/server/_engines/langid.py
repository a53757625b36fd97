"""Telling which language speech is in, with a multilingual Whisper model.

Two questions, asked of the VAD's speech of one clip (its first 30 s): which
language is it (:func:`detect`, for routing an untagged clip), and is it
anything but English (:func:`foreign`, the check of an English-only model's
doubtful clips, which must cost little on English). The model is
faster-whisper's ``WhisperModel``; the thresholds are measured, not guessed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from svwatchd.server._engines.base import SAMPLE_RATE, Audio

__all__ = [
    "CHECK_SPEECH_S",
    "ENGLISH_AT_FIRST_LOOK",
    "ENGLISH_BELOW",
    "FIRST_LOOK_S",
    "detect",
    "foreign",
]

CHECK_SPEECH_S = 3.0
"""Speech needed to check a clip's language: on 1-1.2 s of espeak German and Spanish
base's full detection named Korean and English; on the English card clips (1-2 s) it
took the full 30 s window (0.7 s a clip on one core) to be sure, three times tiny.en's
decode of such a clip."""

FIRST_LOOK_S = 5
ENGLISH_AT_FIRST_LOOK = 0.6
ENGLISH_BELOW = 0.5
"""The check's looks (:func:`foreign`), from base's probability of English, measured on
the shared English clips (card clips 1-3.5 s, read speech 3-7 s) and espeak-ng German,
Spanish, French, Italian (1-5 s): at the first look (speech padded to 5 s) English
scored 0.65-1.00, foreign 0.00-0.56; at the full window English 0.83-1.00, foreign
0.02-0.33."""


def detect(model: Any, speech: Audio) -> tuple[str, float]:
    """The language of ``speech`` and its probability, by Whisper's own detection."""
    language, probability, _all = model.detect_language(audio=speech)
    return str(language), float(probability)


def foreign(model: Any, speech: Audio) -> tuple[str, float] | None:
    """The language of ``speech`` when it is not English, with its probability; None for
    English or for less than :data:`CHECK_SPEECH_S` of speech (too little to tell).

    Two looks, so that English costs little: first the speech alone (padded to 5 s, not
    to Whisper's 30 s window: a twentieth of the encoder's work for a short clip);
    English at :data:`ENGLISH_AT_FIRST_LOOK` or more ends it. Otherwise Whisper's
    detection on the full window decides: English under :data:`ENGLISH_BELOW` is
    foreign, and the likeliest other language is named.
    """
    if len(speech) < CHECK_SPEECH_S * SAMPLE_RATE:
        return None
    short = np.pad(speech, (0, max(0, FIRST_LOOK_S * SAMPLE_RATE - len(speech))))
    if _probabilities(model, short, full=False).get("en", 0.0) >= ENGLISH_AT_FIRST_LOOK:
        return None
    probabilities = _probabilities(model, speech, full=True)
    if probabilities.get("en", 0.0) >= ENGLISH_BELOW:
        return None
    return max(((lang, p) for lang, p in probabilities.items() if lang != "en"), key=_second)


def _second(pair: tuple[str, float]) -> float:
    return pair[1]


def _probabilities(model: Any, speech: Audio, *, full: bool) -> dict[str, float]:
    """Whisper's language probabilities for ``speech``: on its own frames, or (``full``)
    on them padded to the 30 s window the model was trained on."""
    from faster_whisper.audio import pad_or_trim

    features = model.feature_extractor(speech)
    if full:
        features = pad_or_trim(features)
    ranked = model.model.detect_language(model.encode(features))[0]
    return {str(token)[2:-2]: float(p) for token, p in ranked}
