"""What a stream's clips were heard as, together: the language, a foreign-speech
mismatch, and whether the stream is held for it.

Each decode (a file job, a long file's piece, a live segment) hands back one
:class:`~svwatchd.server._engines.base.Heard` per clip; this is the one place
that turns them into what the stream records, and the one that logs a
mismatch, so files, pieces and sockets say it alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from svwatchd.server._engines.base import Heard
from svwatchd.server._lifecycle import Lifecycle, Progress
from svwatchd.server._store import StreamRow

__all__ = ["Hearing", "hearing_of", "hold"]

log = structlog.get_logger("svserver.language")


@dataclass(frozen=True, slots=True)
class Hearing:
    """The stream-level verdict of its clips' results (:func:`hearing_of`)."""

    language: str | None = None
    probability: float | None = None
    mismatch: tuple[str, float] | None = None
    held: str | None = None  # why the stream is held undecoded (on_foreign: hold)


def hearing_of(results: Sequence[Heard], row: StreamRow) -> Hearing:
    """What ``row``'s clips were heard as: the surest detection's language, else the language
    a clip was decoded in; the surest mismatch; the first clip's reason to hold. Only clips
    with words (or a hold) decide. A mismatch is logged here (``language.mismatch``)."""
    deciding = [h for h in results if h.utterances or h.held]
    detected = [h for h in deciding if h.language and h.language_probability is not None]
    if detected:
        best = max(detected, key=lambda h: h.language_probability or 0.0)
        language, probability = best.language, best.language_probability
    else:
        language, probability = next((h.language for h in deciding if h.language), None), None
    flagged = [h.foreign for h in deciding if h.foreign is not None]
    mismatch = max(flagged, key=lambda f: f[1]) if flagged else None
    held = next((h.held for h in deciding if h.held), None)
    if mismatch is not None:
        log.warning(
            "language.mismatch",
            stream_id=row.id,
            source=row.source,
            language=mismatch[0],
            probability=round(mismatch[1], 3),
            on_foreign=row.ask.on_foreign,
            held=held is not None,
        )
    return Hearing(
        language,
        probability,
        mismatch,
        f"{row.source}: {held}" if held is not None else None,
    )


def hold(lifecycle: Lifecycle, row: StreamRow, hearing: Hearing) -> None:
    """End ``row`` in ERROR, held for its language (``hearing.held`` says why), recording
    what was heard; what was committed before stays."""
    assert hearing.held is not None
    heard = Progress(
        language=hearing.language,
        language_probability=hearing.probability,
        mismatch=hearing.mismatch,
    )
    if lifecycle.fail(row.id, hearing.held, heard):
        log.warning("decode.held", stream_id=row.id, source=row.source, reason=hearing.held)
