"""The VAD's ONNX Runtime session: faster-whisper's one shared instance (its ``vad_filter``
uses it too) runs without ONNX Runtime's memory pattern once svserver has loaded it."""

from __future__ import annotations

import numpy as np
from faster_whisper.vad import get_speech_timestamps, get_vad_model

from svwatchd.server._engines.vad import load_vad, speech_chunks
from tests.server.test_engines import load_speech


def test_the_shared_vad_plans_no_memory_per_input_length() -> None:
    """Every clip and piece is a new length; with the pattern on, ONNX Runtime kept memory
    for each (95 -> 222 MB over 300 lengths, measured); the session faster-whisper's own
    calls reach is the one svserver set up, and it still finds the speech."""
    options = load_vad()
    model = get_vad_model()
    assert model.session.get_session_options().enable_mem_pattern is False
    clip = load_speech("sense_and_sensibility_01_austen_64kb-0880.wav")
    audio = np.concatenate([np.zeros(16000, np.float32), clip])
    [(start, end)] = speech_chunks(audio, options)
    assert 0.5 < start / 16000 < 1.3 and end == len(audio)
    assert get_speech_timestamps(audio, options) == [{"start": start, "end": end}]
