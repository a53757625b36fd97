"""Whisper's initial prompt and temperature, asked per clip through ``Ask``: they reach
the decoder, and a clip that asks for them is never packed with others."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from svwatchd.server._engines import Engine, EngineConfig, load_engine
from svwatchd.server._engines.base import Ask, HearsMany
from svwatchd.server._engines.guard import fallback_temperatures
from tests.conftest import speech_file

CARDS = ["001.wav", "003.wav", "005.wav"]
PROMPT = "Ten of clubs. Seven of clubs. Eight of spades, four of clubs, seven of hearts."


@pytest.fixture(scope="module")
def whisper() -> Engine:
    speech_file("001.wav")  # skip when the test data is absent
    return load_engine(EngineConfig())


def _clip(name: str) -> np.ndarray:
    data, _ = sf.read(speech_file(name), dtype="float32")
    return np.asarray(data, dtype=np.float32)


def _packed(engine: Engine) -> int:
    return int(str(engine.info()["packed_clips"]))


def test_fallback_temperatures() -> None:
    assert fallback_temperatures(None) == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's
    assert fallback_temperatures(0.5) == (0.5, 0.7, 0.9)
    assert fallback_temperatures(1.0) == (1.0,)


@pytest.mark.slow
def test_prompted_clips_are_decoded_alone_in_their_own_words(whisper: Engine) -> None:
    assert isinstance(whisper, HearsMany)
    clips = [_clip(n) for n in CARDS]
    before = _packed(whisper)
    plain = whisper.hear_many(clips)
    assert _packed(whisper) > before  # the cards pack when nothing else is asked
    before = _packed(whisper)
    prompted = whisper.hear_many(clips, [Ask(prompt=PROMPT) for _ in clips])
    assert _packed(whisper) == before
    plain_text = " ".join(u.text for h in plain for u in h.utterances)
    prompted_text = " ".join(u.text for h in prompted for u in h.utterances)
    assert any(ch.isdigit() for ch in plain_text)  # tiny.en alone writes "10 of clubs"
    assert "Ten of clubs" in prompted_text and not any(ch.isdigit() for ch in prompted_text)


@pytest.mark.slow
def test_a_temperature_is_decoded_alone(whisper: Engine) -> None:
    assert isinstance(whisper, HearsMany)
    clips = [_clip(n) for n in CARDS]
    before = _packed(whisper)
    heard = whisper.hear_many(clips, [Ask(temperature=0.0) for _ in clips])
    assert _packed(whisper) == before and all(h.utterances for h in heard)
