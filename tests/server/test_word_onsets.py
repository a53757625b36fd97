"""Word starts after a pause: taken from where the VAD hears the speech begin (real Silero,
real Whisper tiny.en, the shared LibriVox clips).

Where a clip's speech begins is measured from the clip itself, as the long-file
benchmark measures it (``benchmarks._common.speech_start``).
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks._common import SENSE, speech_start
from svwatchd.server._engines import EngineConfig, load_engine
from svwatchd.server._engines.base import Engine
from svwatchd.server._engines.onsets import snap_onsets
from tests.conftest import TESTDATA
from tests.server.test_engines import load_speech

RATE = 16000


@pytest.fixture(scope="module")
def whisper() -> Engine:
    assert TESTDATA.is_dir()
    return load_engine(EngineConfig())


@pytest.mark.parametrize("gap", [0.6, 1.5])
def test_the_word_after_a_pause_starts_where_the_speech_does(whisper: Engine, gap: float) -> None:
    """Each clip after another and a pause of room noise, as in a recording: the word
    nearest the clip's speech starts within 0.1 s of it (Whisper alone put it 0.12-0.32 s
    late on these clips)."""
    rng = np.random.default_rng(1)
    before = load_speech(SENSE[0])
    misses = []
    for name in SENSE[1:]:
        clip = load_speech(name)
        noise = rng.normal(0, 0.002, int(gap * RATE)).astype(np.float32)
        audio = np.concatenate([before, noise, clip])
        expected = (len(before) + len(noise)) / RATE + speech_start(clip)
        starts = [w.start for u in whisper.transcribe(audio) for w in u.words]
        nearest = min(starts, key=lambda s: abs(s - expected))
        if abs(nearest - expected) > 0.1:
            misses.append((name, round(nearest - expected, 2)))
    assert not misses, misses


def test_snapping_moves_only_words_near_a_rise_and_keeps_order() -> None:
    """A word placed late moves to where the speech begins and the word before it, run on
    into the pause, ends there; a word placed in the pause moves too; a word inside
    continuous speech, and one with no rise within reach, stay."""
    clip = load_speech(SENSE[1])
    onset = speech_start(clip)
    audio = np.concatenate([np.zeros(RATE, np.float32), clip])
    begin = 1.0 + onset
    late = [("So", 0.1, begin + 0.15, 0.9), ("He", begin + 0.15, begin + 0.4, 0.9)]
    [snapped] = snap_onsets([late], audio)
    assert snapped[1][1] == pytest.approx(begin, abs=0.07)
    assert snapped[0][2] == snapped[1][1]  # the word before no longer runs past it
    early = [("So", 0.1, 0.3, 0.9)], [("He", begin - 0.3, begin + 0.2, 0.9)]  # two segments
    _, [moved] = snap_onsets(early, audio)
    assert moved[1] == pytest.approx(begin, abs=0.07)
    inside = [("was", begin + 0.5, begin + 0.7, 0.9)]
    assert snap_onsets([inside], audio) == [inside]
    far = [("He", begin + 0.6, begin + 0.9, 0.9)]  # the rise lies 0.6 s before it
    assert snap_onsets([far], audio) == [far]
