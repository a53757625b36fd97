"""The temperature fallback's candidates, drawn one at a time.

When greedy decoding of a window fails Whisper's checks, faster-whisper
samples ``best_of`` candidates at a higher temperature and keeps the best.
CTranslate2 decodes those candidates as one batch, copying the encoder's
output and every decoder layer's cross-attention keys and values once per
candidate: measured through svserver, a worker's memory rose by up to 120 MB
during such a window (five candidates), the highest peak of a long recording,
against 50-75 MB for any other step. Drawn one after another the candidates
need one copy; the pick is the same rule (CTranslate2 returns a batch's
candidates best score first and faster-whisper takes the first). The price
is CPU on the windows that fall back: their sampled decodes take about 1.6x
as long (audio that decodes greedily pays nothing; docs/performance.md).
Used on CPU only: a GPU holds the copies at no cost and decodes a batch
faster than its parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Candidates", "OneAtATime"]


@dataclass(frozen=True)
class Candidates:
    """One prompt's sampled candidates, best score first, as CTranslate2's own
    ``WhisperGenerationResult`` gives them (the fields faster-whisper reads)."""

    sequences: list[list[str]]
    sequences_ids: list[list[int]]
    scores: list[float]
    no_speech_prob: float


class OneAtATime:
    """A CTranslate2 Whisper model whose sampled candidates are decoded one at a time;
    everything else passes through to the model unchanged."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(
        self, features: Any, prompts: Any, *, num_hypotheses: int = 1, **options: Any
    ) -> Any:
        """``ctranslate2.models.Whisper.generate``; several sampled candidates with their
        scores (the fallback's call) are drawn by as many calls for one each."""
        sampled = options.get("beam_size", 5) == 1 and options.get("sampling_topk", 1) != 1
        if num_hypotheses <= 1 or not sampled or not options.get("return_scores"):
            return self._model.generate(features, prompts, num_hypotheses=num_hypotheses, **options)
        draws = [
            self._model.generate(features, prompts, num_hypotheses=1, **options)
            for _ in range(num_hypotheses)
        ]
        return [_merged([draw[i] for draw in draws]) for i in range(len(prompts))]


def _merged(draws: list[Any]) -> Candidates:
    """One prompt's single-candidate results as one result, best score first (the no-speech
    probability is the first step's, the same for every draw)."""
    ranked = sorted(draws, key=lambda r: r.scores[0], reverse=True)
    return Candidates(
        sequences=[r.sequences[0] for r in ranked],
        sequences_ids=[r.sequences_ids[0] for r in ranked],
        scores=[r.scores[0] for r in ranked],
        no_speech_prob=float(draws[0].no_speech_prob),
    )
