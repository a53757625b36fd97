"""One encoder pass per packed window: decode it once, keep every word it heard.

faster-whisper's ``transcribe`` walks audio in 30 s windows and, when the
decoder's text does not end on a closing timestamp, throws the unfinished
segment away and encodes again from the last word's end. For one clip's
speech that is right (the next window carries on), but a packed window
(:mod:`~svwatchd.server._engines.packing`) is never longer than one window:
the pass after it re-reads the window's tail, costs a whole 30 s encoder pass
and decodes the last clip's words a second time. Measured on 40 clips cut
hard from read speech (tiny.en, one thread): 39 encoder passes for 11 packed
windows and the clips decoded alone, 13.1 s; with one pass per window 26
passes, 9.6 s, and a lower word error rate (0.204 against 0.234; the clips
decoded one by one: 0.192).

:class:`OnePass` therefore runs the steps of one ``transcribe`` iteration on
the window (features, one encode, the decoder with its temperature fallback,
segments split at timestamp pairs, word alignment) and keeps the unfinished
last segment instead of decoding it again. It uses faster-whisper's public
model methods (``encode``, ``get_prompt``, ``generate_with_fallback``,
``add_word_timestamps``) and takes the decoding options from ``transcribe``
itself, so the settings are the engine's own; the pinned faster-whisper range
in ``pyproject.toml`` and ``tests/server/test_onepass.py`` (the same segments
as ``transcribe`` on a window it decodes in one pass) guard the seam.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from svwatchd.server._engines.base import SAMPLE_RATE, Audio, Task

__all__ = ["OnePass", "split_at_timestamps"]


def split_at_timestamps(
    tokens: list[int], timestamp_begin: int, precision: float, duration: float
) -> list[dict[str, Any]]:
    """The decoder's tokens cut into segments at each pair of timestamps, as Whisper does,
    with the unfinished last segment kept (up to ``duration``, the window's end).

    Each segment is faster-whisper's dict (``seek``, ``start``, ``end``, ``tokens``); a
    segment without text tokens is left out.
    """

    def is_time(token: int) -> bool:
        return token >= timestamp_begin

    cuts = [i for i in range(1, len(tokens)) if is_time(tokens[i]) and is_time(tokens[i - 1])]
    bounds = [0, *cuts, len(tokens)]
    out: list[dict[str, Any]] = []
    for lo, hi in itertools.pairwise(bounds):
        piece = tokens[lo:hi]
        if not any(not is_time(t) for t in piece):
            continue
        times = [(t - timestamp_begin) * precision for t in piece if is_time(t)]
        start = times[0] if times and is_time(piece[0]) else (out[-1]["end"] if out else 0.0)
        end = times[-1] if times and is_time(piece[-1]) and times[-1] > start else duration
        out.append({"seek": 0, "start": start, "end": end, "tokens": piece})
    return out


class OnePass:
    """Decode a window of at most 30 s with one encoder pass, as ``model.transcribe``
    would with ``options`` (keyword arguments of ``transcribe``)."""

    def __init__(self, model: Any, **options: Any) -> None:
        self._model = model
        silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
        # transcribe() builds its options before decoding anything; the segments it
        # would yield are never asked for
        _segments, info = model.transcribe(silence, language="en", vad_filter=False, **options)
        self._options = info.transcription_options

    def segments(self, audio: Audio, language: str | None, task: Task) -> list[Any]:
        """faster-whisper Segments of ``audio`` (at most 30 s), words timed; empty when
        Whisper's no-speech rule skips the window."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import Segment, Word

        model, options = self._model, self._options
        extractor = model.feature_extractor
        features = extractor(audio)
        frames = min(extractor.nb_max_frames, features.shape[-1] - 1)
        encoded = model.encode(pad_or_trim(features[:, :frames]))
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task=task, language=language or "en"
        )
        prompt = model.get_prompt(tokenizer, [], without_timestamps=False)
        result, avg_logprob, temperature, ratio = model.generate_with_fallback(
            encoded, prompt, tokenizer, options
        )
        if _skipped(options, result.no_speech_prob, avg_logprob):
            return []
        pieces = split_at_timestamps(
            list(result.sequences_ids[0]),
            tokenizer.timestamp_begin,
            model.time_precision,
            frames * extractor.time_per_frame,
        )
        if not pieces:
            return []
        model.add_word_timestamps(
            [pieces],
            tokenizer,
            encoded,
            frames,
            options.prepend_punctuations,
            options.append_punctuations,
            last_speech_timestamp=0.0,
        )
        out: list[Any] = []
        for piece in pieces:
            tokens = piece["tokens"]
            text = tokenizer.decode(tokens)
            if piece["start"] == piece["end"] or not text.strip():
                continue
            out.append(
                Segment(
                    id=len(out) + 1,
                    seek=0,
                    start=piece["start"],
                    end=piece["end"],
                    text=text,
                    tokens=tokens,
                    avg_logprob=avg_logprob,
                    compression_ratio=ratio,
                    no_speech_prob=result.no_speech_prob,
                    words=[Word(**w) for w in piece["words"]],
                    temperature=temperature,
                )
            )
        return out


def _skipped(options: Any, no_speech_prob: float, avg_logprob: float) -> bool:
    """Whisper's no-speech rule, as ``transcribe`` applies it: a window that is probably
    not speech and whose text is not confident yields nothing."""
    if options.no_speech_threshold is None or no_speech_prob <= options.no_speech_threshold:
        return False
    return options.log_prob_threshold is None or avg_logprob <= options.log_prob_threshold
