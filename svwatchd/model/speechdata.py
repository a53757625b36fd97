"""Recognition results: utterances with their words, and the writers for them.

Times are seconds (floats) from the start of the stream's audio, measured on
the source's own timeline, so a result can be lined up with the recording.

The writers (:func:`to_text`, :func:`to_json`, :func:`to_srt`, :func:`to_vtt`,
dispatched by :func:`render`) are pure functions returning ``str``. All of them
write utterances in time order; the text and subtitle writers skip utterances
whose text is blank, while JSON keeps every utterance so it round-trips.

Over 400 lines on purpose: this is the vendor's ``speechdata`` module (the
client re-exports it whole), one concept -- the results and every writer of
them -- and the subtitle writers share the utterance ordering and text
cleaning with the others.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from itertools import accumulate
from typing import Any

from svwatchd.model.contract import OUTPUT_FORMATS

__all__ = [
    "MAX_CUE_SECONDS",
    "MAX_LINE_CHARS",
    "Cue",
    "Utterance",
    "Word",
    "format_timestamp",
    "from_json",
    "make_cues",
    "render",
    "srt_timestamp",
    "to_json",
    "to_srt",
    "to_text",
    "to_vtt",
    "vtt_timestamp",
    "wrap_cue_text",
]

MAX_CUE_SECONDS = 7.0
"""Longest a subtitle cue should stay on screen; longer utterances are split."""

MAX_LINE_CHARS = 42
"""Widest a subtitle line should be; a cue holds at most two such lines."""

_BREAK_AFTER = (".", ",", ";", ":", "!", "?", "…")


def _where(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _field(data: Mapping[str, object], key: str, where: str) -> object:
    if key not in data:
        raise ValueError(f"{_where(where, key)}: missing required key")
    return data[key]


def _number(data: Mapping[str, object], key: str, where: str) -> float:
    value = _field(data, key, where)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{_where(where, key)}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{_where(where, key)}: expected a finite number, got {value!r}")
    return float(value)


def _checked(data: object, where: str) -> tuple[Mapping[str, object], str, float, float, float]:
    """Validate what Word and Utterance share: text, a time span, a confidence."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where or 'value'}: expected an object, got {type(data).__name__}")
    text = _field(data, "text", where)
    if not isinstance(text, str):
        raise ValueError(f"{_where(where, 'text')}: expected a string, got {type(text).__name__}")
    start, end = _number(data, "start", where), _number(data, "end", where)
    confidence = _number(data, "confidence", where)
    if start < 0:
        raise ValueError(f"{_where(where, 'start')}: negative time {start!r}")
    if end < start:
        raise ValueError(f"{_where(where, 'end')}: {end!r} is before start {start!r}")
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"{_where(where, 'confidence')}: {confidence!r} is outside [0, 1]")
    return data, text, start, end, confidence


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word: its text, where it lies in the audio, how sure the engine was."""

    text: str
    start: float
    end: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form that :meth:`from_dict` reads back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object, *, where: str = "word") -> Word:
        """Build a word from untrusted (e.g. HTTP) data; unknown keys are ignored.

        Raises ``ValueError`` naming the offending key (prefixed by ``where``) on a
        missing key, a wrong type, a negative time, ``end < start`` or a
        confidence outside [0, 1].
        """
        _, text, start, end, confidence = _checked(data, where)
        return cls(text, start, end, confidence)


@dataclass(frozen=True, slots=True)
class Utterance:
    """A stretch of speech the engine decoded as one unit, with its words in order.

    ``channel`` (0-based) and ``speaker`` (its label: ``agent``, or ``ch0``...)
    are set only when a stream's channels are decoded separately
    (``split_channels``); ``language`` only when the engine said which it heard.
    """

    start: float
    end: float
    text: str
    confidence: float
    words: tuple[Word, ...] = field(default_factory=tuple)
    channel: int | None = None
    speaker: str | None = None
    language: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form (words included) that :meth:`from_dict` reads back;
        ``channel``, ``speaker`` and ``language`` only when set."""
        out: dict[str, Any] = {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "confidence": self.confidence,
            "words": [w.to_dict() for w in self.words],
        }
        for key in _OPTIONAL:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def shifted(self, offset: float) -> Utterance:
        """The same utterance ``offset`` seconds later, its words too (a piece of a longer
        audio put back on the whole's timeline)."""
        words = tuple(
            Word(w.text, w.start + offset, w.end + offset, w.confidence) for w in self.words
        )
        return Utterance(
            self.start + offset,
            self.end + offset,
            self.text,
            self.confidence,
            words,
            self.channel,
            self.speaker,
            self.language,
        )

    @property
    def labelled_text(self) -> str:
        """The text as transcripts print it: ``speaker: text`` when the speaker is known."""
        text = _clean(self.text)
        return f"{self.speaker}: {text}" if self.speaker and text else text

    @classmethod
    def from_dict(cls, data: object, *, where: str = "utterance") -> Utterance:
        """Build an utterance from untrusted data, validating it and each of its words.

        ``words`` may be absent (no word timings) but must otherwise be a list of
        word objects. Raises ``ValueError`` as :meth:`Word.from_dict` does; word
        times are not required to lie inside the utterance's span.
        """
        mapping, text, start, end, confidence = _checked(data, where)
        raw = mapping.get("words", [])
        if not isinstance(raw, list | tuple):
            raise ValueError(f"{_where(where, 'words')}: expected a list, got {type(raw).__name__}")
        words = tuple(
            Word.from_dict(w, where=f"{_where(where, 'words')}[{i}]") for i, w in enumerate(raw)
        )
        channel = mapping.get("channel")
        if channel is not None and (
            isinstance(channel, bool) or not isinstance(channel, int) or channel < 0
        ):
            raise ValueError(f"{_where(where, 'channel')}: {channel!r} is not a channel index")
        speaker, language = (_label(mapping, key, where) for key in ("speaker", "language"))
        return cls(start, end, text, confidence, words, channel, speaker, language)


_OPTIONAL = ("channel", "speaker", "language")


def _label(data: Mapping[str, object], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{_where(where, key)}: expected a string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle cue: a time span and its text on one line (wrapped on output)."""

    start: float
    end: float
    text: str


def format_timestamp(seconds: float, sep: str = ",") -> str:
    """Format ``seconds`` as ``HH:MM:SS<sep>mmm``, rounded half-up to the millisecond.

    Rounding carries into seconds, minutes and hours (59.9996 s is
    ``00:01:00,000``); hours grow past 99 rather than wrap. ``sep`` is ``","``
    for SubRip or ``"."`` for WebVTT. Negative or non-finite input raises
    ``ValueError``.
    """
    if sep not in (",", "."):
        raise ValueError(f"separator must be ',' or '.', got {sep!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"timestamp must be a finite, non-negative number, got {seconds!r}")
    millis = int((Decimal(seconds) * 1000).to_integral_value(rounding=ROUND_HALF_UP))
    rest, ms = divmod(millis, 1000)
    rest, secs = divmod(rest, 60)
    hours, minutes = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def srt_timestamp(seconds: float) -> str:
    """Format ``seconds`` the SubRip way: ``HH:MM:SS,mmm``."""
    return format_timestamp(seconds, ",")


def vtt_timestamp(seconds: float) -> str:
    """Format ``seconds`` the WebVTT way: ``HH:MM:SS.mmm``."""
    return format_timestamp(seconds, ".")


def _clean(text: str) -> str:
    """Collapse all whitespace (newlines included) so text cannot break a cue block."""
    return " ".join(text.split())


def _in_order(utterances: Iterable[Utterance]) -> list[Utterance]:
    return sorted(utterances, key=lambda u: (u.start, u.end))


def wrap_cue_text(text: str, width: int = MAX_LINE_CHARS) -> list[str]:
    """Wrap cue text into one line, or two lines as balanced as possible.

    Both lines fit ``width`` whenever any break at a space allows it; between
    equally balanced breaks the shorter top line wins. Text with no usable
    break stays on one (over-wide) line.
    """
    text = _clean(text)
    if len(text) <= width:
        return [text] if text else []
    spaces = [i for i, c in enumerate(text) if c == " "]
    if not spaces:
        return [text]
    cut = min(spaces, key=lambda i: max(i, len(text) - i - 1))
    return [text[:cut], text[cut + 1 :]]


def _fits(text: str, seconds: float, max_seconds: float, width: int) -> bool:
    """Whether a piece is short enough in time and wraps into two lines of ``width``."""
    lines = wrap_cue_text(text, width)
    return seconds <= max_seconds + 1e-9 and all(len(line) <= width for line in lines)


def _pack(words: Sequence[Word], max_seconds: float, width: int) -> list[list[Word]]:
    """Split words into the fewest pieces that fit a cue, as even as possible.

    Dynamic programming over break points: each piece costs 1 (so fewer pieces
    always win), plus its squared unused share of the two lines (so pieces come
    out balanced, with no one-word leftover), plus a little for a break that is
    not after punctuation. A single word too big for a cue is a piece of its own.
    """
    n, cap = len(words), 2 * width
    best: list[tuple[float, int]] = [(0.0, 0)] + [(math.inf, 0)] * n
    for i in range(n):
        for j in range(i + 1, n + 1):
            text = " ".join(w.text for w in words[i:j])
            if j > i + 1 and not _fits(text, words[j - 1].end - words[i].start, max_seconds, width):
                break
            cost = best[i][0] + 1.0 + (max(cap - len(text), 0) / cap) ** 2 * 1e-3
            if j < n and not text.endswith(_BREAK_AFTER):
                cost += 5e-4
            if cost < best[j][0]:
                best[j] = (cost, i)
    pieces: list[list[Word]] = []
    while n > 0:
        pieces.insert(0, list(words[best[n][1] : n]))
        n = best[n][1]
    return pieces


def _timed_tokens(u: Utterance) -> list[Word]:
    """Word-like tokens of ``u``: its own words, or its text with time shared out by length."""
    words = [Word(_clean(w.text), w.start, w.end, w.confidence) for w in u.words]
    words = [w for w in words if w.text]
    if words:
        return words
    tokens = _clean(u.text).split(" ")
    offsets = [0, *accumulate(len(tok) + 1 for tok in tokens)]
    total = offsets[-1] - 1
    end = max(u.end, u.start)
    span = end - u.start
    # min(): start + span can round one ulp past the end; the last token ends exactly there
    times = [min(u.start + span * min(off, total) / total, end) for off in offsets]
    times[-1] = end
    return [Word(t, times[i], times[i + 1], u.confidence) for i, t in enumerate(tokens)]


def make_cues(
    utterances: Iterable[Utterance],
    *,
    max_seconds: float = MAX_CUE_SECONDS,
    max_line_chars: int = MAX_LINE_CHARS,
) -> list[Cue]:
    """Turn utterances into subtitle cues, sorted by start time.

    An utterance that fits (at most ``max_seconds`` long and wrappable into two
    lines of ``max_line_chars``) becomes one cue with its own span and text.
    A longer one is split at word boundaries, preferring a break after
    punctuation: with word timings each piece spans its first word's start to
    its last word's end (text taken from the words); without them the
    utterance's span is shared out over its text in proportion to length.
    Blank utterances give no cue. A single word too long for a cue gets a cue
    of its own.
    """
    cues: list[Cue] = []
    for u in _in_order(utterances):
        text = _clean(u.text)
        if not text:
            continue
        label = f"{u.speaker}: " if u.speaker else ""
        end = max(u.end, u.start)
        if _fits(label + text, end - u.start, max_seconds, max_line_chars):
            cues.append(Cue(u.start, end, label + text))
            continue
        for piece in _pack(_timed_tokens(u), max_seconds, max_line_chars - len(label)):
            start = piece[0].start
            words = " ".join(w.text for w in piece)
            cues.append(Cue(start, max(piece[-1].end, start), label + words))
    cues.sort(key=lambda c: c.start)  # stable: overlapping utterances interleave by start
    return cues


def to_text(utterances: Iterable[Utterance]) -> str:
    """Plain transcript: one utterance per line in time order, blank ones skipped; each
    line starts ``speaker: `` when the channels were decoded separately."""
    lines = [t for t in (u.labelled_text for u in _in_order(utterances)) if t]
    return "".join(f"{line}\n" for line in lines)


def to_json(utterances: Iterable[Utterance], /, **extra: Any) -> str:
    """JSON document ``{"utterances": [...], **extra}``, indented, non-ASCII kept as is.

    Every utterance is kept (blank ones too), in time order, with its words.
    ``extra`` holds caller metadata (source name, fingerprint, stream id...)
    and must be JSON-serialisable; it may not use the key ``utterances``.
    Non-finite numbers raise ``ValueError`` rather than produce invalid JSON.
    """
    if "utterances" in extra:
        raise ValueError("extra field 'utterances' would overwrite the utterances")
    doc = {"utterances": [u.to_dict() for u in _in_order(utterances)], **extra}
    return json.dumps(doc, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def from_json(document: str | bytes) -> list[Utterance]:
    """Read the utterances back from a :func:`to_json` document, validating them.

    Other top-level fields are ignored. Raises ``ValueError`` on invalid JSON
    or malformed utterances.
    """
    try:
        doc = json.loads(document)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON document: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    raw = _field(doc, "utterances", "")
    if not isinstance(raw, list):
        raise ValueError(f"utterances: expected a list, got {type(raw).__name__}")
    return [Utterance.from_dict(u, where=f"utterances[{i}]") for i, u in enumerate(raw)]


def to_srt(utterances: Iterable[Utterance]) -> str:
    """SubRip subtitles: cues numbered from 1, ``HH:MM:SS,mmm`` times, blank line between."""
    blocks = [
        f"{n}\n{srt_timestamp(c.start)} --> {srt_timestamp(c.end)}\n"
        + "\n".join(wrap_cue_text(c.text))
        + "\n"
        for n, c in enumerate(make_cues(utterances), start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(utterances: Iterable[Utterance]) -> str:
    """WebVTT subtitles: a ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm`` times.

    ``&``, ``<`` and ``>`` in the text are escaped as WebVTT requires.
    """
    blocks = [
        f"{vtt_timestamp(c.start)} --> {vtt_timestamp(c.end)}\n"
        + "\n".join(_vtt_escape(line) for line in wrap_cue_text(c.text))
        + "\n"
        for c in make_cues(utterances)
    ]
    return "WEBVTT\n" + "".join(f"\n{b}" for b in blocks)


def render(utterances: Iterable[Utterance], fmt: str, **extra: Any) -> str:
    """Write ``utterances`` in format ``fmt`` (one of ``OUTPUT_FORMATS``).

    ``extra`` goes to :func:`to_json` as top-level fields; the other formats
    have nowhere to put it and ignore it. An unknown ``fmt`` raises
    ``ValueError`` naming it and the valid formats.
    """
    if fmt == "json":
        return to_json(utterances, **extra)
    writers = {"txt": to_text, "srt": to_srt, "vtt": to_vtt}
    if fmt in writers:
        return writers[fmt](utterances)
    raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(OUTPUT_FORMATS)}")
