"""The temperature fallback's candidates are decoded one at a time (real Whisper tiny.en,
real CTranslate2; a recorder around the real model notes what it is asked)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from svwatchd.server._engines import EngineConfig
from svwatchd.server._engines.base import SAMPLE_RATE, Ask
from svwatchd.server._engines.sampling import Candidates, OneAtATime
from svwatchd.server._engines.whisper import WhisperEngine
from tests.server.test_engines import load_speech, reference, text_of, wer

CLIP = "sense_and_sensibility_01_austen_64kb-0870.wav"
BEST_OF = 5  # faster-whisper's default number of candidates


class Recorder:
    """The real CTranslate2 model, with the number of candidates of each call noted."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.asked: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def generate(self, *args: Any, num_hypotheses: int = 1, **options: Any) -> Any:
        self.asked.append(num_hypotheses)
        return self.model.generate(*args, num_hypotheses=num_hypotheses, **options)


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    load_speech(CLIP)  # skip when the test data is absent
    return WhisperEngine(EngineConfig())


@pytest.fixture
def recorder(engine: WhisperEngine) -> Any:
    wrapped = engine._model.model
    assert isinstance(wrapped, OneAtATime)  # the engine decodes through it
    recorder = Recorder(wrapped._model)
    engine._model.model = OneAtATime(recorder)
    yield recorder
    engine._model.model = wrapped


def _encoded(engine: WhisperEngine) -> tuple[Any, list[int]]:
    """The clip through the real encoder, as one 30 s window, and the decoder's prompt."""
    clip = load_speech(CLIP)
    audio = np.pad(clip, (0, 30 * SAMPLE_RATE - len(clip)))
    features = engine._model.feature_extractor(audio)[:, :3000]
    prompt = [engine._model.hf_tokenizer.token_to_id("<|startoftranscript|>")]
    return engine._model.encode(features[np.newaxis]), prompt


def test_candidates_are_drawn_one_by_one_and_ranked_best_first(
    engine: WhisperEngine, recorder: Recorder
) -> None:
    encoded, prompt = _encoded(engine)
    options: dict[str, Any] = {"max_length": 448, "return_scores": True}
    [greedy] = engine._model.model.generate(
        encoded, [prompt], beam_size=1, return_no_speech_prob=True, **options
    )
    [sampled] = engine._model.model.generate(
        encoded,
        [prompt],
        beam_size=1,
        num_hypotheses=BEST_OF,
        sampling_topk=0,
        sampling_temperature=0.8,
        return_no_speech_prob=True,
        **options,
    )
    assert recorder.asked == [1] * (1 + BEST_OF)
    assert isinstance(sampled, Candidates)
    assert len(sampled.sequences_ids) == len(sampled.sequences) == len(sampled.scores) == BEST_OF
    assert sampled.scores == sorted(sampled.scores, reverse=True)
    assert len({tuple(ids) for ids in sampled.sequences_ids}) > 1  # really drawn, not copied
    assert sampled.no_speech_prob == pytest.approx(greedy.no_speech_prob, abs=1e-4)
    best = engine._model.hf_tokenizer.decode(sampled.sequences_ids[0])
    assert wer([reference(CLIP)], [best]) < 0.5  # a candidate of this speech, not noise


def test_beam_search_and_greedy_calls_pass_through(
    engine: WhisperEngine, recorder: Recorder
) -> None:
    """Only sampled candidates are split: a beam's hypotheses come from one call."""
    encoded, prompt = _encoded(engine)
    [beams] = engine._model.model.generate(
        encoded, [prompt], beam_size=3, num_hypotheses=3, max_length=448, return_scores=True
    )
    assert recorder.asked == [3] and len(beams.sequences_ids) == 3


@pytest.mark.slow
def test_a_sampled_decode_goes_one_candidate_at_a_time(
    engine: WhisperEngine, recorder: Recorder
) -> None:
    """faster-whisper's fallback reaches the model through the wrapper: a clip decoded at a
    temperature asks for one candidate per call, several calls per window, and still
    reads as the speech."""
    [heard] = engine.hear_many([load_speech(CLIP)], [Ask(temperature=0.4)])
    assert recorder.asked and set(recorder.asked) == {1}
    assert len(recorder.asked) % BEST_OF == 0  # best_of draws for each sampled window
    assert wer([reference(CLIP)], [text_of(heard.utterances)]) < 0.25
