"""Packing short clips into shared decoder windows, and handing the words back.

Whisper's encoder always reads a 30 s window, so decoding a 2 s clip alone
pays for 28 s of padding. Packing lays the speech of several independent
clips end to end in one window, separated by :data:`PACK_GAP_S` of digital
silence, decodes once, and splits the words back by their timestamps.

Packing can go wrong: a word's timestamp can drift into the gap, a word can
be drawn across two clips, or a clip's words can go missing. On the card
clips 1 s gaps did exactly that; 2 s gaps held, but not always. So
:func:`attribute` checks every window and names the clips whose result
cannot be trusted; the caller decodes those alone. The rules:

* a word that overlaps exactly one clip's span belongs to it (its times are
  clamped into the span: Whisper often stretches a last word into the gap);
* a word that overlaps two spans straddles a gap: both clips fail;
* a word that lies in a gap (or in the silence after the last clip) but
  starts at most :data:`EDGE_S` after a span's end, or lasts (is not
  zero-length) and ends at most that long before one's start, is that
  clip's word cut at the edge (clips cut from continuous speech end and
  begin mid-word; Whisper times such a word a few hundredths of a second
  into the gap, a last one often with no length): it belongs to that clip,
  clamped to its edge. Not a zero-length word before a span: Whisper has put
  a clip's last word ("clubs", 0 s long) 1.8 s late, across the whole gap,
  just before the next clip's speech;
* any other word that lies wholly in a gap (or in the silence after the
  last clip, where invented words go: a decoder that goes on after the
  speech does so after a pause) cannot be placed: the clips on either side
  fail; but one Whisper was unsure of (:data:`GAP_DROP_P`) is dropped
  instead, as invented or cut words mostly are;
* a clip whose span the VAD marked as speech but that got no word fails.

:func:`touched` names the clips a dropped decoder segment (see
:mod:`svwatchd.server._engines.guard`) overlapped, by the same rules: those
fail too, so the guard's verdict on a shared window never costs a
neighbour its words.

These functions are pure (no model), so the rules are tested directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import numpy as np

from svwatchd.model.speechdata import Utterance
from svwatchd.server._engines.base import SAMPLE_RATE, Audio, make_utterance
from svwatchd.server._engines.guard import COMPRESSION_RATIO_THRESHOLD, compression_ratio

__all__ = [
    "EDGE_S",
    "GAP_DROP_P",
    "LONG_CLIP_S",
    "PACK_GAP_S",
    "PACK_WINDOW_S",
    "Placed",
    "SpanWords",
    "TimedWord",
    "attribute",
    "clip_utterances",
    "loops",
    "plan_windows",
    "timed_words",
    "touched",
    "window_audio",
]

PACK_GAP_S = 2.0
"""Silence between packed clips. 1 s moved words between card clips; 2 s held."""

PACK_WINDOW_S = 28.0
"""Most audio per packed window: under 30 s, so a window is never decoded twice."""

_WINDOW_LIMIT_S = 29.5  # the window with its tail stays inside one 30 s decoder window

EDGE_S = 0.25
"""How far into a gap a clip's cut-edge word may be timed and still be its own. Measured
on 4-6 s clips cut hard from continuous read speech: such words started 0.02-0.08 s
after the span's end or ended 0.17 s before its start; invented words lay 0.3 s and
more into the gap."""

GAP_DROP_P = 0.3
"""A word wholly in a gap (not at a clip's edge) that Whisper gave less probability than
this is dropped instead of failing the clips either side. Measured on 99 clips of 4-6 s
cut back to back from continuous read speech (jobs of 8): such words were invented
("money" for "there might", "D.", "than": 0.01-0.20) or a cut word timed far into the
gap ("Unless", 0.22); dropping them cut the clips decoded again alone from 12 to 8 and the
engine's CPU by 13-14 %, WER 0.190 -> 0.191. A surer word there (a repeated phrase, a loop
of invented text: 0.7-0.99) still fails both clips."""

LONG_CLIP_S = 20.0
"""A clip whose speech spans more than this is decoded alone: packing saves little."""


@dataclass(frozen=True, slots=True)
class Placed:
    """One clip's speech, laid at ``offset`` (samples) in a window.

    ``chunks`` are the sample ranges of the clip the VAD marked as speech
    (padded, in order); they are laid end to end, without the silence between
    them, exactly as faster-whisper does for a clip decoded alone.
    """

    index: int
    chunks: tuple[tuple[int, int], ...]
    offset: int

    @property
    def length(self) -> int:
        """Samples the clip's speech takes in the window."""
        return sum(end - start for start, end in self.chunks)

    def clip_times(self, start: float, end: float, rate: int = SAMPLE_RATE) -> tuple[float, float]:
        """Map a word's times (seconds from this span's start) back to the clip's timeline.

        The word is placed by its midpoint in one chunk and kept inside it,
        so a word never lands in the silence the VAD removed.
        """
        middle = (start + end) / 2 * rate
        base = 0
        for n, (first, last) in enumerate(self.chunks):
            size = last - first
            if middle <= base + size or n == len(self.chunks) - 1:
                shift = (first - base) / rate
                lo, hi = first / rate, last / rate
                s = min(max(start + shift, lo), hi)
                return s, min(max(end + shift, s), hi)
            base += size
        return start, end  # no chunks: not reached for a placed clip


class TimedWord(NamedTuple):
    """A decoded word: text, times in seconds, probability, number of its segment."""

    text: str
    start: float
    end: float
    p: float
    segment: int


SpanWords: TypeAlias = list[list[TimedWord]]
"""A clip's words grouped by the decoder segment they came from, in clip time."""


def plan_windows(
    chunks: Sequence[Sequence[tuple[int, int]]],
    *,
    gap_s: float = PACK_GAP_S,
    window_s: float = PACK_WINDOW_S,
    long_s: float = LONG_CLIP_S,
    rate: int = SAMPLE_RATE,
) -> list[list[Placed]]:
    """Lay each clip's speech chunks (sample ranges; empty = no speech) into windows.

    Clips keep their order; a window is closed when the next clip's speech
    (plus its gap) would not fit in ``window_s``. Clips with no speech, or
    with more than ``long_s`` of it, are left out: the caller handles them.
    """
    gap = round(gap_s * rate)
    limit = round(window_s * rate)
    windows: list[list[Placed]] = []
    current: list[Placed] = []
    used = 0
    for index, ranges in enumerate(chunks):
        spans = tuple((int(a), int(b)) for a, b in ranges if b > a)
        size = sum(b - a for a, b in spans)
        if not spans or size > long_s * rate:
            continue
        offset = used + gap if current else 0
        if current and offset + size > limit:
            windows.append(current)
            current, offset = [], 0
        current.append(Placed(index, spans, offset))
        used = offset + size
    if current:
        windows.append(current)
    return windows


def window_audio(
    window: Sequence[Placed],
    clips: Sequence[Audio],
    *,
    tail_s: float = PACK_GAP_S,
    rate: int = SAMPLE_RATE,
) -> Audio:
    """The window's samples: each clip's speech chunks at its offset, silence elsewhere,
    and ``tail_s`` of silence after the last clip (within Whisper's 30 s window).

    The tail gives words the decoder invents after the speech somewhere to be: without
    it their times are squeezed onto the last clip's end and they pass for its words;
    with it they lie after the last span, and the last clip fails the check.
    """
    last = window[-1]
    end = last.offset + last.length
    tail = max(0, min(round(tail_s * rate), round(_WINDOW_LIMIT_S * rate) - end))
    buffer = np.zeros(end + tail, dtype=np.float32)
    for p in window:
        pos = p.offset
        for start, end in p.chunks:
            buffer[pos : pos + end - start] = clips[p.index][start:end]
            pos += end - start
    return buffer


def _overlaps(word: TimedWord, lo: float, hi: float) -> bool:
    """Whether the word's interval meets ``[lo, hi]`` (a zero-length word counts as a point)."""
    end = max(word.end, word.start)
    return word.start <= hi and end >= lo


def _spans_met(word: TimedWord, bounds: Sequence[tuple[float, float]]) -> tuple[list[int], bool]:
    """Positions of the spans ``word`` overlaps, and True; for a word that overlaps none
    (it lies in a gap or after the last span), the spans either side of it, and False."""
    hits = [k for k, (lo, hi) in enumerate(bounds) if _overlaps(word, lo, hi)]
    if hits:
        return hits, True
    before = [k for k, (_lo, hi) in enumerate(bounds) if hi < word.start]
    after = [k for k, (lo, _hi) in enumerate(bounds) if lo > word.end]
    return before[-1:] + after[:1], False


def attribute(
    window: Sequence[Placed], words: Sequence[TimedWord], *, rate: int = SAMPLE_RATE
) -> tuple[dict[int, SpanWords], set[int]]:
    """Give each word of a decoded window to its clip; return the words and the failed clips.

    ``words`` carry window times. The result maps each clip index to its
    words grouped by segment, with times moved to the clip's own timeline
    (clamped inside the clip's speech), and the set of clip indices that
    fail the checks in the module docstring.
    """
    bounds = [(p.offset / rate, (p.offset + p.length) / rate) for p in window]
    groups: dict[int, dict[int, list[TimedWord]]] = {p.index: {} for p in window}
    bad: set[int] = set()
    for word in words:
        if not word.text.strip():
            continue
        hits, inside = _spans_met(word, bounds)
        edge = not inside and sum(_at_edge(word, bounds[k]) for k in hits) == 1
        if edge:
            hits = [k for k in hits if _at_edge(word, bounds[k])]
        if not inside and not edge and word.p < GAP_DROP_P:
            continue  # an unsure word in a gap: dropped, failing no clip
        if len(hits) != 1 or not (inside or edge):
            bad.update(window[k].index for k in hits)  # straddles a gap, or lies in one
            continue
        k = hits[0]
        lo, hi = bounds[k]
        start, end = window[k].clip_times(
            min(max(word.start, lo), hi) - lo, min(max(word.end, lo), hi) - lo, rate
        )
        moved = TimedWord(word.text, start, end, word.p, word.segment)
        groups[window[k].index].setdefault(word.segment, []).append(moved)
    for p in window:
        if not groups[p.index]:
            bad.add(p.index)
    words_by_clip = {i: [g[s] for s in sorted(g)] for i, g in groups.items()}
    return words_by_clip, bad


def _at_edge(word: TimedWord, bound: tuple[float, float]) -> bool:
    """Whether a word in a gap is the span's own, cut at its edge (:data:`EDGE_S`)."""
    lo, hi = bound
    after_end = 0.0 <= word.start - hi <= EDGE_S
    return after_end or (word.end > word.start and 0.0 <= lo - word.end <= EDGE_S)


def touched(
    window: Sequence[Placed], spans: Sequence[tuple[float, float]], *, rate: int = SAMPLE_RATE
) -> set[int]:
    """The clips whose speech the window-time ``spans`` overlap (for a span in a gap: its
    neighbours), by the rules :func:`attribute` places words with."""
    bounds = [(p.offset / rate, (p.offset + p.length) / rate) for p in window]
    return {
        window[k].index
        for start, end in spans
        for k in _spans_met(TimedWord("", start, end, 0.0, 0), bounds)[0]
    }


def timed_words(segments: Iterable[Any]) -> list[TimedWord]:
    """Whisper's words as (text, start, end, probability, segment number), in window time."""
    return [
        TimedWord(w.word, float(w.start), float(w.end), float(w.probability), n)
        for n, segment in enumerate(segments)
        for w in segment.words or ()
    ]


def clip_utterances(groups: SpanWords, clip_samples: int) -> list[Utterance]:
    """One Utterance per Whisper segment of a clip's attributed words."""
    limit = clip_samples / SAMPLE_RATE
    out: list[Utterance] = []
    for words in groups:
        utterance = make_utterance([(w.text, w.start, w.end, w.p) for w in words], limit=limit)
        if utterance is not None:
            out.append(utterance)
    return out


def loops(per_clip: dict[int, SpanWords]) -> set[int]:
    """The clips whose own attributed text compresses like a repetition loop (Whisper's
    rule, applied to a clip instead of the packed window it shared)."""
    return {
        index
        for index, groups in per_clip.items()
        if compression_ratio("".join(w.text for words in groups for w in words))
        > COMPRESSION_RATIO_THRESHOLD
    }
