"""The non-speech guard: which Whisper segments are invented text, to be dropped.

Whisper is a language model over audio: on hold music, ringing, fax tones,
noise or silence it does not stay quiet, it writes "Thank you.", "." or
"Beep beep beep ...". The Silero VAD in front of the decoder keeps most such
audio away; this guard catches what the VAD lets through (a sung line of hold
music passes it as speech). A segment is **dropped** (never shortened or
rewritten) when one of these holds:

* **not speech**: the window's ``no_speech_prob`` is above
  :data:`NO_SPEECH_THRESHOLD` (0.6) and the text shows it was invented:
  ``avg_logprob`` below :data:`LOG_PROB_THRESHOLD` (-1.0: Whisper's own rule,
  which faster-whisper also applies), or the window's first word has a
  probability below :data:`FIRST_WORD_THRESHOLD` (0.15, the probability
  below which Whisper's hallucination heuristic counts a word as anomalous),
  or the text was sampled (temperature above 0). Measured with tiny.en:
  "Thank you." on a sung melody has a no-speech probability of 0.77-0.84
  and an average log-probability of -0.74 to -0.96, so Whisper's rule alone
  keeps it, but its first word has a probability of 0.03. Sampling happens
  on such a window only when the greedy text was a repetition loop (for any
  other failure Whisper's rule has already skipped the window), and what the
  sampler then writes is random, not heard. Real test speech, clean, quiet
  or with pink noise at 0 dB SNR, never had a no-speech probability above
  0.56 ("five five", first word 0.40), so these extra signs never act on it;
* **repetition loop**: the window's gzip ``compression_ratio`` is above
  :data:`COMPRESSION_RATIO_THRESHOLD` (2.4). faster-whisper treats this
  threshold as a reason to retry at higher temperatures; a text still above
  it after every retry is a loop, not a transcript. A window of packed clips
  is not judged so (clips that say the same thing, "yes", "ten of clubs",
  make a sound window compress like a loop, and every retry was wasted):
  each clip's own text is, and a clip that loops is decoded again alone;
* **no words**: the text holds no letter or digit ("." or "♪").

Whisper reports ``no_speech_prob``, ``avg_logprob``, ``compression_ratio``
and the temperature for a whole decoding window (up to 30 s), and every
segment of that window carries the same values; so the rules judge windows,
and the first word is the window's first. In a window shared by several
packed clips a dropped segment could take a neighbour's speech with it, so
the engine decodes every clip a dropped segment touches again on its own.
Dropped segments are counted, not logged above debug level: on calls they
are normal. faster-whisper itself skips a window that fails Whisper's rule
before it yields any segment (the engine passes it these thresholds, which
also drive its temperature fallback); such windows are not counted, and the
guard repeats the rule so that it holds whatever faster-whisper does.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "COMPRESSION_RATIO_THRESHOLD",
    "FIRST_WORD_THRESHOLD",
    "LOG_PROB_THRESHOLD",
    "NO_SPEECH_THRESHOLD",
    "Rule",
    "Screened",
    "compression_ratio",
    "fallback_temperatures",
    "rejects",
    "screen",
]

NO_SPEECH_THRESHOLD = 0.6
"""Whisper's: above this no-speech probability a window is suspect."""

LOG_PROB_THRESHOLD = -1.0
"""Whisper's: a suspect window whose average token log-probability is below this is dropped."""

COMPRESSION_RATIO_THRESHOLD = 2.4
"""Whisper's: text that gzip compresses more than this is a repetition loop."""

FIRST_WORD_THRESHOLD = 0.15
"""A suspect window whose first word is less likely than this is dropped (see module doc)."""

Rule = Literal["not_speech", "repetition", "no_words"]
"""Why a segment was dropped."""

_WORDLIKE = re.compile(r"\w", re.UNICODE)


def _has_words(text: str) -> bool:
    """Whether ``text`` holds a letter or digit (``\\w`` minus the underscore)."""
    return _WORDLIKE.search(text.replace("_", "")) is not None


def compression_ratio(text: str) -> float:
    """Whisper's measure of a repetition loop: the UTF-8 text's length over its zlib-compressed
    length (0 for no text)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def rejects(segment: Any, first_word_p: float, *, repetition: bool = True) -> Rule | None:
    """The rule that drops ``segment`` (a faster-whisper Segment), or None to keep it.

    ``first_word_p`` is the probability of the first word of the segment's
    decoding window (1.0 when it has none). ``repetition=False`` leaves the
    window's repetition rule out: a window of packed clips that say the same
    thing compresses like a loop although each clip is sound, so the engine
    judges each clip's own text instead.
    """
    if not _has_words(segment.text):
        return "no_words"
    if repetition and segment.compression_ratio > COMPRESSION_RATIO_THRESHOLD:
        return "repetition"
    if segment.no_speech_prob > NO_SPEECH_THRESHOLD and (
        segment.avg_logprob < LOG_PROB_THRESHOLD
        or first_word_p < FIRST_WORD_THRESHOLD
        or (segment.temperature or 0.0) > 0.0
    ):
        return "not_speech"
    return None


@dataclass
class Screened:
    """The segments the guard kept, and those it dropped with the rule that dropped each."""

    kept: list[Any] = field(default_factory=list)
    dropped: list[tuple[Any, Rule]] = field(default_factory=list)

    @property
    def rules(self) -> Counter[Rule]:
        """How many segments each rule dropped."""
        return Counter(rule for _segment, rule in self.dropped)


def _first_word_probability(segments: Iterable[Any]) -> dict[int, float]:
    """Each decoding window's first-word probability, keyed by the window's ``seek``."""
    first: dict[int, float] = {}
    for segment in segments:
        if segment.seek in first:
            continue
        for word in segment.words or ():
            if _has_words(word.word):
                first[segment.seek] = float(word.probability)
                break
    return first


def screen(segments: Iterable[Any], *, repetition: bool = True) -> Screened:
    """Split decoded segments into those the guard keeps and those it drops (``repetition``:
    see :func:`rejects`)."""
    listed = list(segments)
    first = _first_word_probability(listed)
    out = Screened()
    for segment in listed:
        rule = rejects(segment, first.get(segment.seek, 1.0), repetition=repetition)
        if rule is None:
            out.kept.append(segment)
        else:
            out.dropped.append((segment, rule))
    return out


def fallback_temperatures(first: float | None) -> tuple[float, ...]:
    """The temperatures Whisper tries in turn while a window fails the thresholds above:
    from ``first`` (None: 0, greedy) up to 1 in steps of 0.2, as the reference
    implementation's ``--temperature`` does with its default increment."""
    start = first or 0.0
    return tuple(round(start + 0.2 * i, 3) for i in range(6) if start + 0.2 * i <= 1.0 + 1e-9)
