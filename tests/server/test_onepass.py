"""One encoder pass per packed window (svwatchd.server._engines.onepass).

The real tiny.en model throughout; the encoder is counted by wrapping the real
model's ``encode`` (it still runs).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from svwatchd.server._engines.bundles import TINY_EN, bundle_dir
from svwatchd.server._engines.onepass import OnePass, split_at_timestamps
from svwatchd.server._engines.packing import plan_windows, window_audio
from svwatchd.server._engines.vad import load_vad, speech_chunks
from tests.conftest import speech_file
from tests.server.test_engines import LONG_FORM, SR, load_speech

BEGIN = 100  # the first timestamp token in these made-up token lists
PRECISION = 0.02

OPTIONS: dict[str, Any] = {
    "beam_size": 1,
    "word_timestamps": True,
    "condition_on_previous_text": False,
    "no_speech_threshold": 0.6,
    "log_prob_threshold": -1.0,
    "compression_ratio_threshold": None,
    "temperature": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
}


def spans(tokens: list[int], duration: float = 30.0) -> list[tuple[float, float, list[int]]]:
    return [
        (s["start"], s["end"], s["tokens"])
        for s in split_at_timestamps(tokens, BEGIN, PRECISION, duration)
    ]


def test_split_at_timestamp_pairs() -> None:
    # <|0.00|> a b <|1.00|><|1.00|> c d <|2.00|>: two segments, the last closed
    assert spans([100, 1, 2, 150, 150, 3, 4, 200]) == [
        (0.0, 1.0, [100, 1, 2, 150]),
        (1.0, 2.0, [150, 3, 4, 200]),
    ]
    # no pair at all: one segment up to its last timestamp, or the window's end
    assert spans([100, 1, 2, 150]) == [(0.0, 1.0, [100, 1, 2, 150])]
    assert spans([100, 1, 2], duration=7.5) == [(0.0, 7.5, [100, 1, 2])]
    # a pair with nothing between it and the next: no empty segment
    assert spans([100, 150, 150, 1, 160]) == [(1.0, 1.2, [150, 1, 160])]
    assert spans([]) == []


def test_the_unfinished_last_segment_is_kept() -> None:
    # transcribe() drops "c d" (no closing timestamp) and decodes again from 1.0 s
    assert spans([100, 1, 2, 150, 150, 3, 4], duration=12.0) == [
        (0.0, 1.0, [100, 1, 2, 150]),
        (1.0, 12.0, [150, 3, 4]),
    ]


@pytest.fixture(scope="module")
def model() -> Any:
    from faster_whisper import WhisperModel

    speech_file("001.wav")  # skip when the test data is absent
    path = os.fspath(bundle_dir(TINY_EN, None))
    return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=1)


def counting(model: Any) -> Callable[[], int]:
    """Count the real model's encoder passes from now on; returns the counter."""
    calls = [0]
    encode = model.encode

    def counted(features: Any) -> Any:
        calls[0] += 1
        return encode(features)

    model.encode = counted
    return lambda: calls[0]


def packed(names_or_clips: list[np.ndarray]) -> list[np.ndarray]:
    """The windows the engine would decode for these clips."""
    vad = load_vad()
    chunks = [speech_chunks(c, vad) for c in names_or_clips]
    return [window_audio(w, names_or_clips) for w in plan_windows(chunks) if len(w) > 1]


def words(segments: Any) -> list[tuple[str, float, float]]:
    return [(w.word, w.start, w.end) for s in segments for w in s.words]


@pytest.mark.slow
def test_same_segments_as_transcribe_on_a_window_it_decodes_in_one_pass(model: Any) -> None:
    """The seam with faster-whisper's internals: where transcribe needs one pass, one pass
    gives exactly its segments, words and times (a new faster-whisper that changes the
    steps fails here)."""
    clips = [load_speech(n) for n in ("001.wav", "goforward.raw", "005.wav", "003.wav")]
    (window,) = packed(clips)
    reference, _info = model.transcribe(window, language="en", vad_filter=False, **OPTIONS)
    reference = list(reference)
    assert reference and all(s.seek == 0 for s in reference)  # the premise: one pass
    ours = OnePass(model, **OPTIONS).segments(window, "en", "transcribe")
    assert [(s.text, s.start, s.end) for s in ours] == [(s.text, s.start, s.end) for s in reference]
    assert words(ours) == words(reference)


@pytest.mark.slow
def test_a_packed_window_costs_one_encoder_pass(model: Any) -> None:
    """Clips cut back to back from read speech: transcribe encodes most of their windows
    more than once (it decodes the tail again after an unfinished segment); one pass
    encodes each once and keeps what transcribe's first pass heard."""
    speech = np.concatenate([load_speech(n) for n in LONG_FORM])
    cuts = np.cumsum([0, 4.3, 5.1, 4.6, 5.8, 4.1, 4.7, 5.2]) * SR
    windows = packed([speech[int(a) : int(b)] for a, b in pairwise(cuts)])
    assert len(windows) >= 2
    encodes = counting(model)
    first_pass = []
    for window in windows:
        segments = list(model.transcribe(window, language="en", vad_filter=False, **OPTIONS)[0])
        first_pass.append("".join(s.text for s in segments if s.seek == 0))
    by_transcribe = encodes()
    onepass = OnePass(model, **OPTIONS)
    for window, first in zip(windows, first_pass, strict=True):
        text = "".join(s.text for s in onepass.segments(window, "en", "transcribe"))
        assert first and text.startswith(first)  # its first pass, and the unfinished rest
    assert encodes() - by_transcribe == len(windows)
    assert by_transcribe > len(windows)
