"""A finished stream as OpenAI's transcription answers: ``json``, ``text``, ``srt``, ``vtt``,
``verbose_json``.

The subtitles are the project's own writers (:func:`svwatchd.model.speechdata.render`,
the ones the daemon's outputs use), so a transcript reads the same whichever
way it was asked for. ``text``, ``srt`` and ``vtt`` are sent as
``text/plain; charset=utf-8``, as the real API sends all three.

``verbose_json`` segments are svserver's utterances (one per Whisper segment
it kept). svserver stores words with their times and probabilities, not
Whisper's per-segment decoding record, so some fields are derived, as the
README's OpenAI section says: ``avg_logprob`` is the mean natural log of the
segment's word probabilities (Whisper's is over tokens); ``compression_ratio``
is computed from the segment's text as Whisper computes it (bytes over
zlib-compressed bytes); ``no_speech_prob`` is 0.0 (svserver's guard has
already dropped the segments Whisper judged silent); ``tokens`` is empty;
``temperature`` is the one asked for (0.0 by default); ``seek`` is the
segment's start in Whisper's 10 ms frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fastapi.responses import JSONResponse, Response

from svwatchd.model.languages import language_name
from svwatchd.model.speechdata import Utterance, render
from svwatchd.server._engines.guard import compression_ratio
from svwatchd.server._openai_form import Transcription
from svwatchd.server._store import StreamRow

__all__ = ["TEXT_TYPE", "respond", "verbose"]

TEXT_TYPE = "text/plain; charset=utf-8"
"""The content type of the ``text``, ``srt`` and ``vtt`` answers."""

_SUBTITLES = {"srt": "srt", "vtt": "vtt"}


def respond(
    asked: Transcription, row: StreamRow, utterances: Sequence[Utterance], language: str
) -> Response:
    """The answer in the format ``asked`` names; ``language`` is the code of the language
    the audio was heard in (or taken to be)."""
    text = _text(utterances)
    fmt = asked.response_format
    if fmt == "text":
        return Response(text + "\n", media_type=TEXT_TYPE)
    if fmt in _SUBTITLES:
        return Response(render(utterances, _SUBTITLES[fmt]), media_type=TEXT_TYPE)
    if fmt == "verbose_json":
        return JSONResponse(verbose(asked, row, utterances, language))
    return JSONResponse({"text": text, "usage": _usage(row)})


def verbose(
    asked: Transcription, row: StreamRow, utterances: Sequence[Utterance], language: str
) -> dict[str, object]:
    """The ``verbose_json`` body: segments and/or words as ``asked.granularities`` say."""
    body: dict[str, object] = {
        "task": str(row.tags.get("task", "transcribe")),
        "language": language_name(language) or language,
        "duration": _duration(row),
        "text": _text(utterances),
    }
    temperature = asked.temperature or 0.0
    if "segment" in asked.granularities:
        body["segments"] = [
            _segment(i, u, temperature) for i, u in enumerate(_in_order(utterances))
        ]
    if "word" in asked.granularities:
        body["words"] = [
            {"word": w.text, "start": w.start, "end": w.end}
            for u in _in_order(utterances)
            for w in u.words
        ]
    body["usage"] = _usage(row)
    return body


def _in_order(utterances: Sequence[Utterance]) -> list[Utterance]:
    return sorted(utterances, key=lambda u: (u.start, u.end))


def _text(utterances: Sequence[Utterance]) -> str:
    return " ".join(t for t in (u.text.strip() for u in _in_order(utterances)) if t)


def _duration(row: StreamRow) -> float:
    return round(row.sourceseconds or row.decoded_seconds or 0.0, 3)


def _usage(row: StreamRow) -> dict[str, object]:
    return {"type": "duration", "seconds": _duration(row)}


def _segment(index: int, u: Utterance, temperature: float) -> dict[str, object]:
    text = u.text.strip()
    logs = [math.log(max(w.confidence, 1e-6)) for w in u.words]
    return {
        "id": index,
        "seek": round(u.start * 100),
        "start": u.start,
        "end": u.end,
        "text": text,
        "tokens": [],
        "temperature": temperature,
        "avg_logprob": round(sum(logs) / len(logs), 4) if logs else 0.0,
        "compression_ratio": round(compression_ratio(text), 4),
        "no_speech_prob": 0.0,
    }
