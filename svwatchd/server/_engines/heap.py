"""A decode worker gives its free heap back to the system between steps.

Each step of a decode (voice activity, log-mel features, the encoder of
every 30 s window, the decoder, word alignment) allocates and frees buffers
of several MB; glibc keeps what was freed inside its heap, so the next
step's buffers -- above all the encoder's attention scores, 54-108 MB for
each window -- came on top of what the previous steps had left. Measured in
one worker on 60 s pieces of a long recording, the peak stood +135 MB above
idle; giving the heap back before a window is encoded and after each job
brought it to +105 MB. Pages given back are faulted in again when reused,
and that is paid in CPU time: doing it at every window cost 2 % on packed
short clips (svserver's throughput on hard-cut clips fell 3 %), so a worker
gives back only once it has grown by :data:`SLACK` since it last did, which
the long files' windows reach and the packed clips' do not (no measurable
cost there). A lower mmap threshold bounds the peak too, by unmapping every
large buffer as it is freed, and costs more (session 10; figures in
docs/performance.md).
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable
from typing import Any

__all__ = ["SLACK", "TrimsBeforeEncode", "give_back", "give_back_if_grown", "resident"]

SLACK = 64 * 2**20
"""Growth since the heap was last given back (bytes) below which an encode does not give
it back again: the trim's price is paid where there is memory to win."""

_floor = 0
"""Resident bytes right after the latest give-back (0: none yet)."""


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None under another C library (nothing to give back then)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def resident() -> int:
    """This process's resident memory, bytes (0 where ``/proc`` is absent)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def give_back() -> bool:
    """Return the free pages of this process's heap to the system; True when some were."""
    global _floor
    trim = _malloc_trim()
    if trim is None:
        return False
    gave = bool(trim(0))
    _floor = resident()
    return gave


def give_back_if_grown(slack: int = SLACK) -> bool:
    """:func:`give_back` when the process has grown by ``slack`` bytes or more since it
    last gave back (always the first time); True when it gave some back."""
    if _malloc_trim() is None or (_floor and resident() - _floor < slack):
        return False
    return give_back()


class TrimsBeforeEncode:
    """A CTranslate2 Whisper model that gives the free heap back before encoding a window
    (:func:`give_back_if_grown`), so the encoder's buffers take the place of the previous
    steps' instead of stacking on them; everything else passes through unchanged."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, features: Any, *args: Any, **options: Any) -> Any:
        """``ctranslate2.models.Whisper.encode``, after :func:`give_back_if_grown`."""
        give_back_if_grown()
        return self._model.encode(features, *args, **options)
