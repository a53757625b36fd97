"""Word starts after a pause, taken from where the VAD hears the speech begin.

Whisper places words by cross-attention, and the first word after a pause
is where that is weakest: measured on the LibriVox clips laid out as a
recording (0.6-1.6 s of room noise between them), tiny.en started that word
more than 0.1 s from where the speech begins for 33 of 48 clips (-0.22 to
+0.25 s), while Silero's speech probability rose past its threshold within
0.06 s of it for all 48. So a word whose start lies near a rise of the
VAD's probability after a pause takes the rise as its start. The VAD is run
on that stretch of audio only, a fraction of its cost over the whole clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from svwatchd.server._engines.base import SAMPLE_RATE, Audio

__all__ = ["ONSET_P", "REACH_S", "TimedWord", "snap_onsets"]

TimedWord = tuple[str, float, float, float]
"""A word as engines hand it over: text, start, end (seconds), confidence."""

ONSET_P = 0.5
"""Silero's speech threshold (faster-whisper's VAD default): speech begins where the
probability reaches it."""

PAUSE_P = 0.35
"""Below this (Silero's silence threshold, 0.15 under the speech one) a frame is a pause."""

PAUSE_FRAMES = 3
"""Frames of pause (32 ms each, about 0.1 s) before a rise for it to be a start of speech,
not a dip inside a word."""

REACH_S = 0.4
"""How far from Whisper's start the VAD's rise may lie to be taken."""

LEAD_S = 0.5
"""Audio the VAD hears before the stretch searched, so its state has settled there."""

_FRAME = 512  # Silero's window at 16 kHz


def snap_onsets(
    segments: Sequence[Sequence[TimedWord]], clip: Audio, rate: int = SAMPLE_RATE
) -> list[list[TimedWord]]:
    """The segments' words (in time order across segments), each word that begins speech
    after a pause starting where the VAD hears that speech begin, when the VAD's rise lies
    within :data:`REACH_S` of Whisper's start, after the previous word's start and before
    the word's own end. A previous word that ran past the new start ends there."""
    out: list[list[TimedWord]] = []
    previous: TimedWord | None = None
    for segment in segments:
        words: list[TimedWord] = []
        for word in segment:
            text, start, end, confidence = word
            low = max(start - REACH_S, previous[1] + 0.02 if previous else 0.0)
            onset = _rise(clip, rate, low=low, high=min(start + REACH_S, end - 0.02), near=start)
            if onset is not None:
                start = onset
                if previous is not None and previous[2] > onset:
                    fixed = (previous[0], previous[1], onset, previous[3])
                    _replace_last(out, words, fixed)
            word = (text, start, end, confidence)
            words.append(word)
            previous = word
        out.append(words)
    return out


def _replace_last(done: list[list[TimedWord]], current: list[TimedWord], word: TimedWord) -> None:
    """Put ``word`` in place of the last word handed out (in this segment or an earlier one)."""
    if current:
        current[-1] = word
        return
    for segment in reversed(done):
        if segment:
            segment[-1] = word
            return


def _rise(clip: Audio, rate: int, *, low: float, high: float, near: float) -> float | None:
    """The start of speech after a pause that lies in [low, high) nearest to ``near``, by
    the VAD's probability frame by frame; None when there is none."""
    if high <= low:
        return None
    from faster_whisper.vad import get_vad_model

    first = max(0, int((low - LEAD_S) * rate) // _FRAME)
    last = min(len(clip) // _FRAME, int(high * rate) // _FRAME + 1)
    if last - first <= PAUSE_FRAMES:
        return None
    # a copy: faster-whisper's VAD writes into the array it is given
    stretch = np.array(clip[first * _FRAME : last * _FRAME], dtype=np.float32)
    probs = np.asarray(get_vad_model()(stretch), dtype=np.float32).reshape(-1)
    rises = [(first + i) * _FRAME / rate for i in range(1, len(probs)) if _rises(probs, i)]
    rises = [t for t in rises if low <= t < high]
    return min(rises, key=lambda t: abs(t - near)) if rises else None


def _rises(probs: np.ndarray, i: int) -> bool:
    """Frame ``i`` crosses the speech threshold after a pause: the frames before it climb
    from at least :data:`PAUSE_FRAMES` frames of pause in at most :data:`PAUSE_FRAMES`."""
    if probs[i] < ONSET_P or probs[i - 1] >= ONSET_P:
        return False
    j = i - 1
    while j >= 0 and probs[j] >= PAUSE_P and i - j <= PAUSE_FRAMES:
        j -= 1  # the climb
    return j + 1 >= PAUSE_FRAMES and bool((probs[j + 1 - PAUSE_FRAMES : j + 1] < PAUSE_P).all())
