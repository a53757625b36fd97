"""Cutting live audio into utterance-sized segments as it arrives, on voice activity.

Live systems that re-decode a growing buffer fall behind on CPUs; cutting on
about half a second of trailing silence and decoding each segment once keeps
up (field notes). The Silero VAD that faster-whisper ships decides what is
speech; nothing is downloaded. Silence yields no segment at all, so an engine
never gets the chance to hallucinate text on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from svwatchd._audio import Samples

__all__ = ["LiveSegmenter", "Segment"]


@dataclass(frozen=True)
class Segment:
    """A stretch of speech: its samples and where it starts, in seconds from the stream start."""

    start: float
    audio: Samples

    @property
    def end(self) -> float:
        """Where it ends, in seconds from the stream start."""
        return self.start + len(self.audio) / 16000


class LiveSegmenter:
    """Feed samples as they arrive; get back the segments that closed.

    A segment closes after ``silence`` seconds without speech, or when speech
    has run for ``max_seconds`` without a pause. ``offset`` is the stream time
    of the first sample fed (after a restart, where decoding resumes).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        silence: float = 0.5,
        max_seconds: float = 30.0,
        offset: float = 0.0,
        check_every: float = 0.2,
    ) -> None:
        from faster_whisper.vad import VadOptions

        self.rate = sample_rate
        self._silence = int(silence * sample_rate)
        self._max = int(max_seconds * sample_rate)
        self._check = int(check_every * sample_rate)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = offset  # stream seconds of _buffer[0]
        self._unchecked = 0
        self._pad = int(0.2 * sample_rate)
        self._options = VadOptions(
            threshold=0.5,
            min_silence_duration_ms=int(silence * 1000),
            speech_pad_ms=200,
            min_speech_duration_ms=150,
        )

    @property
    def position(self) -> float:
        """Stream seconds up to which every sample has been emitted or dropped as silence."""
        return self._buffer_start

    def feed(self, samples: Samples) -> list[Segment]:
        """Add samples; return the segments that are now complete."""
        if samples.size:
            self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
            self._unchecked += samples.size
        if self._unchecked < self._check:
            return []
        self._unchecked = 0
        return self._cut(final=False)

    def flush(self) -> list[Segment]:
        """End of stream: whatever speech is left becomes a segment."""
        return self._cut(final=True)

    def _speech(self) -> list[dict[str, int]]:
        from faster_whisper.vad import get_speech_timestamps

        if self._buffer.size < 512:
            return []
        spans: list[dict[str, int]] = get_speech_timestamps(
            self._buffer, self._options, sampling_rate=self.rate
        )
        return spans

    def _emit(self, start: int, end: int) -> Segment:
        seg = Segment(self._buffer_start + start / self.rate, self._buffer[start:end].copy())
        self._drop(end)
        return seg

    def _drop(self, upto: int) -> None:
        self._buffer = self._buffer[upto:]
        self._buffer_start += upto / self.rate

    def _cut(self, *, final: bool) -> list[Segment]:
        out: list[Segment] = []
        while True:
            spans = self._speech()
            n = self._buffer.size
            if not spans:
                # Keep a little audio: speech may be starting at the very end.
                keep = 0 if final else min(n, self._pad + self._check)
                self._drop(n - keep)
                return out
            first = spans[0]
            # the VAD pads each span; the silence is counted from the speech's real end
            closed = final or first["end"] - self._pad + self._silence <= n or len(spans) > 1
            if closed:
                out.append(self._emit(first["start"], first["end"]))
                continue
            if n - first["start"] >= self._max:
                out.append(self._emit(first["start"], first["start"] + self._max))
                continue
            if first["start"] > 0:
                self._drop(first["start"])
            return out
