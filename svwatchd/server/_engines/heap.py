"""The decode workers' allocator setting: glibc's mmap threshold fixed at 16 MiB.

Whisper's working set comes and goes with every 30 s window (attention
scores of about 54 MB a layer in the encoder), and with glibc's default
dynamic threshold a worker kept much of what it freed, so the next window's
buffers came on top of it. Measured through svserver on a 30-minute
recording (the fallback's candidates drawn one at a time:
:mod:`~svwatchd.server._engines.sampling`), each worker's peak stood
+132..+159 MB above idle with the default and +98..+110 MB with the
threshold fixed at 16 MiB (which keeps the heap's trim threshold at its
default too, so freed memory at the heap's top goes back); on the 3-hour
file +147..+164 -> +115..+129 MB, one worker's wall time 452 -> 473 s
(figures in docs/performance.md). Lower thresholds
(1-4 MiB) cost 25-40 % more time: every buffer of a few MB became a fresh
mapping.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["MMAP_THRESHOLD", "fix_mmap_threshold"]

MMAP_THRESHOLD = 16 * 2**20
"""Allocations from this size on are mapped, and unmapped when freed."""

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def fix_mmap_threshold() -> bool:
    """Fix this process's glibc mmap threshold at :data:`MMAP_THRESHOLD`; False where the C
    library is not glibc or the operator set ``MALLOC_MMAP_THRESHOLD_`` (theirs stands)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
