"""Stream metadata: the reserved audio-format fields, normalised, and free tags.

A Stream's metadata is split once, at construction, into the reserved format
fields (``samprate``, ``sampwidth``, ``encoding``, ``channels``, ``endian``),
each parsed into one canonical form, and free tags kept as given. Every
failure is an :class:`~svwatchd.errors.InvalidStreamError` naming the source
and the field, so a bad stream never reaches a server.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Final, TypeAlias

from svwatchd.errors import InvalidStreamError
from svwatchd.model.contract import (
    MAX_CHANNELS,
    MAX_SAMPRATE,
    MAX_SAMPWIDTH,
    MIN_SAMPRATE,
    is_language,
    is_tag_key,
)
from svwatchd.model.enums import Encoding, Endian

__all__ = [
    "FORMAT_FIELDS",
    "MAX_PROMPT_CHARS",
    "RESERVED_TAGS",
    "TagValue",
    "channel_labels",
    "match_metadata",
    "parse_format_field",
    "parse_reserved_tag",
    "parse_samprate",
    "split_metadata",
]

TagValue: TypeAlias = str | int | float | bool

FORMAT_FIELDS: Final = ("samprate", "sampwidth", "encoding", "channels", "endian")
_SAMPRATE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>k|khz|hz)?\s*$", re.IGNORECASE)


def parse_samprate(value: object) -> int:
    """Parse a sample rate in Hz: an int, or a string such as ``'16000'``, ``'8k'``, ``'44.1k'``.

    Raises ``ValueError`` for anything else, for a fractional rate in Hz, and for
    a rate outside 8000..48000.
    """
    hz: Decimal
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a sample rate")
    if isinstance(value, int):
        hz = Decimal(value)
    elif isinstance(value, float) and math.isfinite(value):
        hz = Decimal(repr(value))
    elif isinstance(value, str) and (m := _SAMPRATE.match(value)):
        try:
            hz = Decimal(m["num"])
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            raise ValueError(f"{value!r} is not a sample rate") from None
        if (m["unit"] or "").lower() in ("k", "khz"):
            hz *= 1000
    else:
        raise ValueError(f"{value!r} is not a sample rate (use Hz, e.g. 16000, or '8k', '44.1k')")
    if hz != hz.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of Hz")
    rate = int(hz)
    if not MIN_SAMPRATE <= rate <= MAX_SAMPRATE:
        raise ValueError(f"{rate} Hz is outside {MIN_SAMPRATE}..{MAX_SAMPRATE}")
    return rate


def _parse_small_int(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a {what}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise ValueError(f"{value!r} is not a {what}")
    if not low <= value <= high:
        raise ValueError(f"{value} is outside {low}..{high}")
    return value


def parse_format_field(name: str, value: object) -> int | Encoding | Endian:
    """Parse one reserved format field into its canonical form (raises ``ValueError``)."""
    if name == "samprate":
        return parse_samprate(value)
    if name == "sampwidth":
        return _parse_small_int(
            value, 1, MAX_SAMPWIDTH, f"sample width in bytes (1-{MAX_SAMPWIDTH})"
        )
    if name == "channels":
        return _parse_small_int(value, 1, MAX_CHANNELS, "channel count")
    if name == "encoding":
        return Encoding.parse(value)
    if name == "endian":
        return Endian.parse(value)
    raise KeyError(name)


RESERVED_TAGS: Final = (
    "channel_labels",
    "language",
    "on_foreign",
    "prompt",
    "recorded_at",
    "split_channels",
    "task",
    "temperature",
    "track",
)
"""Tags with a meaning of their own, validated (and normalised) like the format fields."""

_TASKS: Final = ("transcribe", "translate")
_ON_FOREIGN: Final = ("decode", "hold", "route")
MAX_PROMPT_CHARS: Final = 2000
"""Longest ``prompt`` tag: Whisper reads at most 223 tokens of it (about 1,000 characters)."""


def parse_reserved_tag(name: str, value: object) -> TagValue:
    """Parse one reserved tag into its canonical form (raises ``ValueError`` saying why).

    ``language``: a language code (``en``, ``de``, ``haw``) or ``auto`` (detect it);
    ``track``: an audio
    track number (0-based) or a language tag; ``split_channels``: a bool;
    ``channel_labels``: names for the channels, a list or a comma-separated
    string, kept as ``"agent,customer"``; ``task``: ``transcribe`` or
    ``translate``; ``on_foreign``: what an English-only model does with speech
    in another language (``decode`` it flagged, ``hold`` it, ``route`` it to a
    multilingual model); ``recorded_at``: an ISO 8601 time; ``prompt``: text for Whisper
    to continue (its initial prompt: spellings, names, style), at most
    :data:`MAX_PROMPT_CHARS` characters; ``temperature``: a number from 0 to 1, the first
    temperature of Whisper's fallback (0: greedy first).
    """
    if name == "language":
        if not is_language(value):
            raise ValueError(f"{value!r} is not a language code (e.g. 'en', 'de', 'haw') or 'auto'")
        return value
    if name == "track":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{value!r} is not a track number or a language tag")
        if isinstance(value, int) and value < 0:
            raise ValueError(f"{value} is not a track number (0 is the first audio track)")
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty track name")
        return value.strip() if isinstance(value, str) else value
    if name == "split_channels":
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false")
        return value
    if name == "channel_labels":
        return _channel_labels(value)
    if name == "task":
        if value not in _TASKS:
            raise ValueError(f"{value!r} is not one of {', '.join(_TASKS)}")
        return str(value)
    if name == "on_foreign":
        if value not in _ON_FOREIGN:
            raise ValueError(f"{value!r} is not one of {', '.join(_ON_FOREIGN)}")
        return str(value)
    if name == "prompt":
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{value!r} is not a text prompt")
        if len(value) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is longer than {MAX_PROMPT_CHARS} characters")
        return value
    if name == "temperature":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{value!r} is not a number from 0 to 1")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{value!r} is not a number from 0 to 1")
        return float(value)
    if name == "recorded_at":
        try:
            datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO 8601 time (e.g. 2026-11-24T09:30:00+01:00)"
            ) from None
        return str(value) if not isinstance(value, str) else value
    raise KeyError(name)


def _channel_labels(value: object) -> str:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(x, str) for x in items):
        raise ValueError(f"{value!r} is not a list of names (e.g. [agent, customer])")
    labels = [x.strip() for x in items]
    if not labels or not all(labels) or len(labels) > MAX_CHANNELS:
        raise ValueError(f"{value!r} must name 1 to {MAX_CHANNELS} channels, none empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{value!r} names a channel twice")
    return ",".join(labels)


def channel_labels(tags: Mapping[str, object], channels: int) -> list[str]:
    """The label of each channel: the ``channel_labels`` tag, then ``ch<N>`` for the rest."""
    given = str(tags.get("channel_labels") or "")
    named = [x for x in given.split(",") if x] if given else []
    return [named[i] if i < len(named) else f"ch{i}" for i in range(channels)]


def _check_tag(source: str, key: object, value: object) -> TagValue:
    if not is_tag_key(key):
        raise InvalidStreamError(
            f"Stream {source}: metadata name {key!r} is not valid (letters, digits, '_', '.', "
            "'-'; starting with a letter or '_'; at most 128 characters)",
            source=source,
            field=str(key),
        )
    if key in RESERVED_TAGS:
        try:
            return parse_reserved_tag(key, value)
        except ValueError as exc:
            raise InvalidStreamError(
                f"Stream {source}: metadata {key!r}: {exc}", source=source, field=key
            ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidStreamError(
            f"Stream {source}: metadata {key!r} is {value!r}; a tag must be a finite number",
            source=source,
            field=key,
        )
    if not isinstance(value, str | int | float | bool):
        raise InvalidStreamError(
            f"Stream {source}: metadata {key!r} is a {type(value).__name__}; a tag must be a "
            "string, number or bool",
            source=source,
            field=key,
        )
    return value


def split_metadata(
    source: str, metadata: Mapping[str, object]
) -> tuple[dict[str, int | Encoding | Endian], dict[str, TagValue]]:
    """Split metadata into parsed format fields and free tags, validating both.

    Raises :class:`InvalidStreamError` naming ``source`` and the field at fault.
    """
    fmt: dict[str, int | Encoding | Endian] = {}
    tags: dict[str, TagValue] = {}
    for key, value in metadata.items():
        if key in FORMAT_FIELDS:
            try:
                fmt[key] = parse_format_field(key, value)
            except ValueError as exc:
                raise InvalidStreamError(
                    f"Stream {source}: {key} {exc}", source=source, field=key
                ) from None
        else:
            tags[key] = _check_tag(source, key, value)
    return fmt, tags


def match_metadata(
    fmt: Mapping[str, object], tags: Mapping[str, object], query: Mapping[str, object]
) -> bool:
    """True if every field of ``query`` exists in ``fmt`` or ``tags`` with the same value.

    Format fields are compared in canonical form (``'8k'`` equals 8000); tags as
    given. The one rule behind ``Stream.tagsmatch`` and the server's tag queries.
    """
    for key, want in query.items():
        if key in FORMAT_FIELDS:
            try:
                want = parse_format_field(key, want)
            except ValueError:
                return False
            if key not in fmt or fmt[key] != want:
                return False
        elif key not in tags or not _same(tags[key], want):
            return False
    return True


def _same(a: object, b: object) -> bool:
    # bool is an int in Python; a tag True must not match 1, nor "1".
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b
