"""Durations in the daemon's config: ``"500ms"``, ``"10s"``, ``"5m"``, ``"1h30m"``, ``"7d"``.

Operators write intervals the way they say them; the daemon works in float
seconds. :func:`parse_duration` is the one parser behind every duration key
(``settle``, ``refresh_interval``, ``delete_after``, ...), so each accepts
exactly the same syntax and fails with the same message:

- a string of one or more ``NUMBER UNIT`` parts, units ``ms``, ``s``, ``m``,
  ``h``, ``d`` (lower case: ``M`` could be read as months), each unit at most
  once and largest first (``"1h30m"``, ``"2m 30.5s"``); numbers are decimals
  without an exponent;
- a plain non-negative number (YAML ``10`` or ``2.5``, or the string ``"10"``),
  taken as seconds.

Booleans, negative, infinite and NaN values are refused. Arithmetic is exact
(``fractions.Fraction``) until the final conversion to ``float``, so
``parse_duration(format_duration(x)) == x`` for every finite ``x >= 0``:
a message that quotes a duration quotes one the parser reads back identically.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Final

__all__ = ["UNITS", "format_duration", "parse_duration"]

UNITS: Final[dict[str, int]] = {"d": 86400, "h": 3600, "m": 60, "s": 1}
"""Seconds per whole unit, largest first (``ms`` is handled as a thousandth of ``s``)."""

_UNIT_SECONDS: Final[dict[str, Fraction]] = {
    **{unit: Fraction(secs) for unit, secs in UNITS.items()},
    "ms": Fraction(1, 1000),
}
_ORDER: Final = ("d", "h", "m", "s", "ms")
_PART = re.compile(r"\s*(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|[dhms])")
_PLAIN = re.compile(r"\s*(?:\d+(?:\.\d*)?|\.\d+)\s*")
_HINT: Final = "use e.g. '500ms', '10s', '5m', '1h30m', '7d', or a number of seconds"


def parse_duration(value: object) -> float:
    """Return ``value`` as a non-negative number of seconds; see the module docstring.

    Raises ``ValueError`` with a message quoting ``value`` and the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration ({_HINT})")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite duration ({_HINT})")
        if value < 0:
            raise ValueError(f"{value!r} is negative; a duration must be 0 or more")
        return _to_float(Fraction(value), value)
    if not isinstance(value, str):
        what = "an empty value" if value is None else f"a {type(value).__name__}"
        raise ValueError(f"{what} is not a duration ({_HINT})")
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"{value!r} is negative; a duration must be 0 or more")
    if _PLAIN.fullmatch(text):
        return _to_float(Fraction(text.strip()), value)
    total = Fraction(0)
    pos = 0
    last = -1
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise ValueError(f"{value!r} is not a duration ({_HINT})")
        unit = m["unit"]
        rank = _ORDER.index(unit)
        if rank <= last:
            raise ValueError(
                f"{value!r} is not a duration: each unit at most once, largest first ({_HINT})"
            )
        last = rank
        total += Fraction(m["num"]) * _UNIT_SECONDS[unit]
        pos = m.end()
    if last < 0:
        raise ValueError(f"{value!r} is not a duration ({_HINT})")
    return _to_float(total, value)


def _to_float(seconds: Fraction, value: object) -> float:
    try:
        return float(seconds)
    except OverflowError:
        raise ValueError(f"{value!r} is too long a duration") from None


def _decimal(frac: Fraction) -> str:
    """Write a fraction whose denominator divides a power of ten as a plain decimal."""
    if frac.denominator == 1:
        return str(frac.numerator)
    digits = 0
    scaled = frac
    while scaled.denominator != 1:
        scaled *= 10
        digits += 1
    text = str(scaled.numerator).rjust(digits + 1, "0")
    return f"{text[:-digits]}.{text[-digits:]}".rstrip("0").rstrip(".")


def format_duration(seconds: float) -> str:
    """Write ``seconds`` the way an operator would (``"1h30m"``, ``"2.5s"``, ``"500ms"``).

    The result reads back through :func:`parse_duration` to exactly ``seconds``.
    Raises ``ValueError`` for a negative or non-finite value.
    """
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{seconds!r} is not a duration (a finite number of seconds, 0 or more)")
    # repr() is the shortest decimal that reads back as this float, so the
    # parts below are exact decimals and their sum parses back to ``seconds``.
    rest = Fraction(repr(float(seconds)))
    if rest == 0:
        return "0s"
    if rest < 1:
        return f"{_decimal(rest * 1000)}ms"
    parts: list[str] = []
    for unit, size in UNITS.items():
        if unit == "s":
            if rest:
                parts.append(f"{_decimal(rest)}s")
            break
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
