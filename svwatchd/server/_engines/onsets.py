"""Word starts after a pause, taken from where the VAD hears the speech begin.

Whisper places words by cross-attention, and the first word after a pause
is where that is weakest: measured on the LibriVox clips laid out as a
recording (0.6-1.6 s of room noise between them), tiny.en started that word
more than 0.1 s from where the speech begins for 33 of 48 clips (-0.22 to
+0.25 s), while Silero's speech probability rose past its threshold within
0.06 s of it for all 48. So a word whose start lies near a rise of the
VAD's probability after a pause takes the rise as its start. The VAD runs
once over the clip (about 0.1 % of real time, some 4 % of tiny.en's decoding
on one thread); running it per word cost twice that, and taking only the
words Whisper itself puts after a gap missed half the clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from svwatchd.server._engines.base import SAMPLE_RATE, Audio

__all__ = ["ONSET_P", "PAUSE_FRAMES", "PAUSE_P", "REACH_S", "TimedWord", "snap_onsets"]

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

_FRAME = 512  # Silero's window at 16 kHz


def snap_onsets(
    segments: Sequence[Sequence[TimedWord]], clip: Audio, rate: int = SAMPLE_RATE
) -> list[list[TimedWord]]:
    """The segments' words (in time order across segments), each word that begins speech
    after a pause starting where the VAD hears that speech begin, when the VAD's rise lies
    within :data:`REACH_S` of Whisper's start, after the previous word's start and before
    the word's own end. A previous word that ran past the new start ends there."""
    if not any(segments):
        return [list(s) for s in segments]
    rises = _rises(clip, rate)
    out: list[list[TimedWord]] = []
    previous: TimedWord | None = None
    for segment in segments:
        words: list[TimedWord] = []
        for word in segment:
            text, start, end, confidence = word
            low = max(start - REACH_S, previous[1] + 0.02 if previous else 0.0)
            high = min(start + REACH_S, end - 0.02)
            near = rises[(rises >= low) & (rises < high)]
            if len(near):
                start = float(near[np.argmin(np.abs(near - start))])
                if previous is not None and previous[2] > start:
                    fixed = (previous[0], previous[1], start, previous[3])
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


def _rises(clip: Audio, rate: int) -> np.ndarray:
    """Where speech begins after a pause in ``clip`` (seconds, in order): each frame whose
    VAD probability reaches :data:`ONSET_P` within :data:`PAUSE_FRAMES` frames of at least
    :data:`PAUSE_FRAMES` frames below :data:`PAUSE_P`."""
    from faster_whisper.vad import get_vad_model

    frames = len(clip) // _FRAME
    if frames <= 2 * PAUSE_FRAMES:
        return np.zeros(0)
    # a copy: faster-whisper's VAD writes into the array it is given
    whole = np.array(clip[: frames * _FRAME], dtype=np.float32)
    probs = np.asarray(get_vad_model()(whole), dtype=np.float32).reshape(-1)
    speech = probs >= ONSET_P
    crossing = np.flatnonzero(speech[1:] & ~speech[:-1]) + 1
    pause = np.convolve(probs < PAUSE_P, np.ones(PAUSE_FRAMES), mode="full")[: len(probs)]
    # pause[j] == PAUSE_FRAMES: frames j-2..j are all pause
    after_pause = [
        i for i in crossing if (pause[max(0, i - PAUSE_FRAMES) : i] >= PAUSE_FRAMES).any()
    ]
    return np.asarray(after_pause, dtype=np.float64) * _FRAME / rate
