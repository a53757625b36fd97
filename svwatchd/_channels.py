"""Channels decoded apart (``split_channels``): which of them are worth decoding at all.

A stereo call recording with one party per channel is decoded channel by
channel, each utterance labelled with its channel. Phone systems also store
mono calls as two identical channels: decoding both would double every
utterance, so a channel that repeats an earlier one is decoded once and said
so in the stream's stats.
"""

from __future__ import annotations

import numpy as np

from svwatchd._audio import Samples

__all__ = ["duplicate_channels"]


def duplicate_channels(channels: list[Samples], *, similarity: float = 0.98) -> dict[int, int]:
    """Channels that repeat an earlier one (a mono call stored as stereo): {copy: original}.

    Two channels are the same when their correlation is at least ``similarity``
    and their levels agree within 10 %; each copy maps to the first channel it
    repeats, so the caller decodes that one once.
    """
    copies: dict[int, int] = {}
    for i, ch in enumerate(channels):
        for j in range(i):
            if j in copies:
                continue
            if _same_signal(channels[j], ch, similarity):
                copies[i] = j
                break
    return copies


def _same_signal(a: Samples, b: Samples, similarity: float) -> bool:
    n = min(len(a), len(b))
    if n == 0 or abs(len(a) - len(b)) > 1:
        return False
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    ea, eb = float(np.dot(a, a)), float(np.dot(b, b))
    if ea == 0.0 or eb == 0.0:
        return ea == eb  # two silent channels are the same silence
    if not 0.81 <= ea / eb <= 1 / 0.81:  # amplitudes within 10 % of each other
        return False
    return float(np.dot(a, b)) / float(np.sqrt(ea * eb)) >= similarity
