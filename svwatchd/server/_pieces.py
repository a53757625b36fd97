"""A long file cut into pieces at quiet moments, as it is read.

A recording of hours is never held whole: its audio streams in blocks
(:func:`svwatchd._decode.iter_audio`) and is cut into pieces of about
:data:`PIECE_SECONDS`, each ending at the quietest moment of its last
quarter (a pause between words, so no word is cut in two), each decoded
once on whichever worker is free, and committed in order with the position
it reaches. A restart goes on from the last piece committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np

from svwatchd._audio import Samples

__all__ = ["LONG_FILE_SECONDS", "PIECE_SECONDS", "Piece", "cut_pieces"]

PIECE_SECONDS: Final = 60.0
"""The longest piece; two Whisper windows of speech and a bit, a few seconds of work."""

LONG_FILE_SECONDS: Final = 90.0
"""Files longer than this are decoded piece by piece; shorter ones in one go."""

_FRAME: Final = 0.02  # seconds per energy frame
_QUIET_SPAN: Final = 0.4  # seconds of the quietest stretch sought


@dataclass(frozen=True)
class Piece:
    """One piece: where it starts and ends in the file (seconds), and its audio, one array
    per channel decoded (one for a mono mix)."""

    start: float
    end: float
    channels: list[Samples]


def cut_pieces(
    blocks: Iterator[list[Samples]],
    *,
    start: float,
    rate: int,
    piece_seconds: float = PIECE_SECONDS,
) -> Iterator[Piece]:
    """Cut streamed blocks (as ``iter_audio`` yields them, from ``start`` seconds) into
    pieces of at most ``piece_seconds``, at the quietest moment of each piece's last quarter.
    The pieces cover the audio exactly once, in order."""
    longest = int(piece_seconds * rate)
    held: list[Samples] = []
    position = start
    for block in blocks:
        if not held:
            held = [np.zeros(0, dtype=np.float32) for _ in block]
        held = [np.concatenate([h, b]) for h, b in zip(held, block, strict=True)]
        while len(held[0]) >= longest:
            cut = _quiet_cut(held, longest, rate)
            yield Piece(position, position + cut / rate, [h[:cut] for h in held])
            position += cut / rate
            held = [h[cut:] for h in held]
    if held and len(held[0]):
        yield Piece(position, position + len(held[0]) / rate, held)


def _quiet_cut(held: list[Samples], longest: int, rate: int) -> int:
    """Where to end a piece: the middle of the quietest stretch in the last quarter of the
    first ``longest`` samples (all channels together)."""
    frame = max(1, int(_FRAME * rate))
    lo, hi = longest * 3 // 4, longest
    mix = np.sum([np.square(h[lo:hi], dtype=np.float64) for h in held], axis=0)
    usable = len(mix) // frame * frame
    if usable < frame:
        return longest
    energy = mix[:usable].reshape(-1, frame).mean(axis=1)
    span = max(1, int(_QUIET_SPAN / _FRAME))
    if len(energy) > span:
        energy = np.convolve(energy, np.ones(span) / span, mode="valid")
        offset = span // 2
    else:
        offset = 0
    return lo + (int(np.argmin(energy)) + offset) * frame
