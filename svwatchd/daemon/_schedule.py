"""Pause windows: weekly wall-clock periods in which the daemon pauses its own streams.

A window is written ``"DAYS HH:MM-HH:MM"``:

- ``DAYS`` is a day (``mon``; full names such as ``monday`` too, any case), a
  range (``mon-fri``; ``fri-mon`` wraps over the weekend), a comma list of
  days and ranges (``mon,wed,fri``, ``mon-wed,sat``), or ``daily`` / ``*``.
  It may be left out, which means ``daily``.
- The times are a half-open wall-clock range: ``09:00-17:00`` is active from
  09:00:00 up to, not including, 17:00:00. ``24:00`` may end a range. An end
  before the start wraps midnight: ``fri 22:00-06:00`` starts on Friday at
  22:00 and runs into Saturday 06:00. Equal start and end are refused.

Windows are evaluated in wall-clock time of one zone -- an IANA name
(``Europe/Berlin``, via :mod:`zoneinfo`) or, when none is given, the host's
local zone -- so ``09:00`` means 09:00 on either side of a DST change. On a
spring-forward day a boundary inside the skipped hour takes effect at the
jump; on a fall-back day a window inside the repeated hour is active in both
passes.

Everything here is pure: callers pass the (timezone-aware) time, so the
daemon can drive it with an injected clock in tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DAY_NAMES", "PauseWindow", "PauseWindows", "load_zone", "local_zone"]

DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day abbreviations, indexed like :meth:`datetime.weekday` (Monday is 0)."""

_FULL_NAMES: Final = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
_DAY_INDEX: Final = {n: i for names in (DAY_NAMES, _FULL_NAMES) for i, n in enumerate(names)}
_SPEC = re.compile(
    r"^\s*(?:(?P<days>.*?)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$"
)
_FORM: Final = "expected 'DAYS HH:MM-HH:MM', e.g. 'mon-fri 09:00-17:00' or 'daily 22:00-06:00'"


def local_zone() -> tzinfo:
    """The host's local time zone, DST-aware where it can be found.

    ``$TZ`` (an IANA name, or a path to a zone file) wins, then
    ``/etc/localtime``; failing both, the current fixed UTC offset.
    """
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            if os.path.isabs(tz):
                with open(tz, "rb") as f:
                    return ZoneInfo.from_file(f, key=tz)
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (ValueError, OSError):
        pass
    return datetime.now().astimezone().tzinfo or UTC


def load_zone(name: str | None) -> tzinfo:
    """Return the zone called ``name`` (IANA), or the host's local zone for ``None``.

    Raises ``ValueError`` naming ``name`` when no such zone is known.
    """
    if name is None:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


def _parse_time(text: str, spec: str, *, end: bool) -> int:
    hours, minutes = (int(p) for p in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        allowed = "00:00..24:00" if end else "00:00..23:59"
        raise ValueError(f"pause window {spec!r}: time {text!r} is not in {allowed}")
    return hours * 60 + minutes


def _day(name: str, spec: str) -> int:
    try:
        return _DAY_INDEX[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"pause window {spec!r}: {name.strip()!r} is not a day "
            f"(use {', '.join(DAY_NAMES)}, a range such as 'mon-fri', or 'daily'); {_FORM}"
        ) from None


def _parse_days(text: str | None, spec: str) -> frozenset[int]:
    if text is None or text.strip().lower() in ("daily", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.split(","):
        if not item.strip():
            raise ValueError(f"pause window {spec!r}: empty day in {text!r}; {_FORM}")
        first, dash, last = item.partition("-")
        lo = _day(first, spec)
        hi = _day(last, spec) if dash else lo
        days.update((lo + k) % 7 for k in range((hi - lo) % 7 + 1))
    return frozenset(days)


@dataclass(frozen=True)
class PauseWindow:
    """One window: the days it starts on and its wall-clock start and end in minutes.

    ``start`` is 0..1439, ``end`` 1..1440; ``end < start`` means it runs past
    midnight into the next day.
    """

    spec: str
    days: frozenset[int]
    start: int
    end: int

    @classmethod
    def parse(cls, spec: str) -> PauseWindow:
        """Parse ``"DAYS HH:MM-HH:MM"`` (see the module docstring); ``ValueError`` if invalid."""
        if not isinstance(spec, str):
            raise ValueError(f"pause window {spec!r} is not a string; {_FORM}")
        m = _SPEC.match(spec)
        if m is None:
            raise ValueError(f"pause window {spec!r} is not valid; {_FORM}")
        start = _parse_time(m["start"], spec, end=False)
        end = _parse_time(m["end"], spec, end=True)
        if start == end:
            raise ValueError(
                f"pause window {spec!r}: start and end are the same time; for a whole day "
                "write '00:00-24:00'"
            )
        return cls(spec.strip(), _parse_days(m["days"], spec), start, end)

    @property
    def wraps(self) -> bool:
        """True when the window runs past midnight into the next day."""
        return self.end < self.start

    def contains(self, wall: datetime) -> bool:
        """True when the wall-clock time ``wall`` (its tzinfo ignored) lies in this window."""
        minute = wall.hour * 60 + wall.minute
        day = wall.weekday()
        if not self.wraps:
            return day in self.days and self.start <= minute < self.end
        return (day in self.days and minute >= self.start) or (
            (day - 1) % 7 in self.days and minute < self.end
        )


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no time zone; pass a timezone-aware datetime")
    return at


def _offset(zone: tzinfo, ts: int) -> timedelta | None:
    return datetime.fromtimestamp(ts, zone).utcoffset()


def _transitions(zone: tzinfo, start: datetime, stop: datetime) -> Iterable[datetime]:
    """UTC instants in (start, stop] at which ``zone``'s UTC offset changes.

    Zone data has whole-second transitions, so an hourly scan bisected down to
    the second finds each one exactly.
    """
    t = int(start.timestamp())
    end = int(stop.timestamp()) + 1
    while t < end:
        nxt = t + 3600
        if _offset(zone, t) != _offset(zone, nxt):
            lo, hi = t, nxt
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(zone, mid) == _offset(zone, lo):
                    lo = mid
                else:
                    hi = mid
            yield datetime.fromtimestamp(hi, UTC)
        t = nxt


@dataclass(frozen=True)
class PauseWindows:
    """A set of pause windows evaluated in one zone; empty means never paused.

    ``timezone`` is the IANA name given (``None``: the host's local zone) and
    ``zone`` the loaded zone itself.
    """

    windows: tuple[PauseWindow, ...] = ()
    timezone: str | None = None
    zone: tzinfo = field(default_factory=local_zone, compare=False)

    @classmethod
    def parse(cls, specs: Iterable[str], timezone: str | None = None) -> PauseWindows:
        """Parse each spec and load the zone; ``ValueError`` names the first bad one."""
        zone = load_zone(timezone)
        return cls(tuple(PauseWindow.parse(s) for s in specs), timezone, zone)

    def __bool__(self) -> bool:
        return bool(self.windows)

    def active(self, at: datetime) -> bool:
        """True when the instant ``at`` (timezone-aware) lies inside any window."""
        wall = _aware(at).astimezone(self.zone)
        return any(w.contains(wall) for w in self.windows)

    def next_change(self, at: datetime) -> datetime | None:
        """The first instant after ``at`` where :meth:`active` changes, in UTC.

        UTC because arithmetic on two datetimes that share a zone is wall-clock
        arithmetic, wrong across a DST change. ``None`` when it never changes
        (no windows, or windows that cover the whole week).
        """
        at = _aware(at).astimezone(UTC)
        if not self.windows:
            return None
        first = at.astimezone(self.zone).date()
        candidates: set[datetime] = set()
        for k in range(-1, 9):
            day: date = first + timedelta(days=k)
            midnight = datetime.combine(day, time())
            for w in self.windows:
                for minute in (w.start, w.end):
                    wall = midnight + timedelta(minutes=minute)
                    # Both readings of an ambiguous or skipped wall time; in UTC,
                    # because aware datetimes sharing a tzinfo compare ignoring fold.
                    for fold in (0, 1):
                        local = wall.replace(tzinfo=self.zone, fold=fold)
                        candidates.add(local.astimezone(UTC))
        stop = at + timedelta(days=9)
        candidates.update(_transitions(self.zone, at, stop))
        now = self.active(at)
        for c in sorted(c for c in candidates if c > at):
            if self.active(c) != now:
                return c
        return None
