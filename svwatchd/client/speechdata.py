"""Recognition results: utterances with their words, and the writers for them.

Times are seconds (floats) from the start of the stream's audio, measured on
the source's own timeline, so a result can be lined up with the recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Utterance", "Word"]


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word: its text, where it lies in the audio, how sure the engine was."""

    text: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True, slots=True)
class Utterance:
    """A stretch of speech the engine decoded as one unit, with its words in order."""

    start: float
    end: float
    text: str
    confidence: float
    words: tuple[Word, ...] = field(default_factory=tuple)
