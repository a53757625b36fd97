"""Pause windows: parsing, wall-clock evaluation across midnight and DST, and next_change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svwatchd.daemon._schedule import PauseWindow, PauseWindows, load_zone, local_zone

BERLIN = ZoneInfo("Europe/Berlin")
# 2026-11-23 is a Monday; Berlin springs forward on 2026-03-29 (02:00 -> 03:00)
# and falls back on 2026-10-25 (03:00 -> 02:00).


def berlin(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=BERLIN)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("mon", {0}),
        ("Monday", {0}),
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("fri-mon", {4, 5, 6, 0}),
        ("sun-sun", {6}),
        ("mon,wed,fri", {0, 2, 4}),
        ("mon-tue, sat", {0, 1, 5}),
        ("daily", set(range(7))),
        ("*", set(range(7))),
    ],
)
def test_day_forms(days: str, expected: set[int]) -> None:
    assert PauseWindow.parse(f"{days} 09:00-17:00").days == expected


def test_days_may_be_left_out_and_times_parse_to_minutes() -> None:
    w = PauseWindow.parse("9:30-24:00")
    assert (w.days, w.start, w.end, w.wraps) == (frozenset(range(7)), 570, 1440, False)
    assert PauseWindow.parse("fri 22:00-06:00").wraps


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("xyz 09:00-17:00", "'xyz' is not a day"),
        ("mon-xyz 09:00-17:00", "'xyz' is not a day"),
        ("mon,,fri 09:00-17:00", "empty day"),
        ("mon 9-17", "is not valid"),
        ("mon 09:00", "is not valid"),
        ("mon 25:00-26:00", "'25:00' is not in 00:00..23:59"),
        ("mon 24:00-01:00", "'24:00' is not in 00:00..23:59"),
        ("mon 10:60-11:00", "'10:60'"),
        ("mon 01:00-24:01", "'24:01' is not in 00:00..24:00"),
        ("mon 08:00-08:00", "the same time"),
        ("", "is not valid"),
    ],
)
def test_bad_specs_are_named(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        PauseWindow.parse(spec)
    assert repr(spec) in str(info.value)


def test_non_string_spec() -> None:
    with pytest.raises(ValueError, match="not a string"):
        PauseWindow.parse(9)  # type: ignore[arg-type]


def test_office_hours() -> None:
    pw = PauseWindows.parse(["mon-fri 09:00-17:00"], "Europe/Berlin")
    assert pw
    assert not pw.active(berlin(2026, 11, 23, 8, 59, 59))
    assert pw.active(berlin(2026, 11, 23, 9, 0))
    assert pw.active(berlin(2026, 11, 27, 16, 59, 59))
    assert not pw.active(berlin(2026, 11, 27, 17, 0))
    assert not pw.active(berlin(2026, 11, 28, 12, 0))  # Saturday
    # the same instant written in another zone
    assert pw.active(utc(2026, 11, 23, 8, 0))  # 09:00 CET
    assert not pw.active(utc(2026, 11, 23, 7, 59))


def test_midnight_wrap_runs_into_the_next_day() -> None:
    pw = PauseWindows.parse(["fri 22:00-06:00"], "Europe/Berlin")
    assert not pw.active(berlin(2026, 11, 27, 21, 59))  # Friday
    assert pw.active(berlin(2026, 11, 27, 22, 0))
    assert pw.active(berlin(2026, 11, 28, 0, 0))  # Saturday
    assert pw.active(berlin(2026, 11, 28, 5, 59, 59))
    assert not pw.active(berlin(2026, 11, 28, 6, 0))
    assert not pw.active(berlin(2026, 11, 28, 23, 0))  # Saturday is not a start day
    assert not pw.active(berlin(2026, 11, 27, 3, 0))  # nor was Thursday


def test_wrapping_day_range_over_the_weekend() -> None:
    pw = PauseWindows.parse(["fri-mon 12:00-13:00"], "UTC")
    active = [pw.active(utc(2026, 11, 23 + k, 12, 30)) for k in range(7)]
    assert active == [True, False, False, False, True, True, True]


def test_spring_forward_in_berlin() -> None:
    pw = PauseWindows.parse(["daily 01:00-02:30"], "Europe/Berlin")
    assert pw.active(utc(2026, 3, 29, 0, 59))  # 01:59 CET
    assert not pw.active(utc(2026, 3, 29, 1, 0))  # 03:00 CEST: 02:00-02:30 never happens
    nxt = pw.next_change(berlin(2026, 3, 29, 1, 30))
    assert nxt == utc(2026, 3, 29, 1, 0) and nxt.tzinfo is UTC  # returned in UTC
    # office hours keep their wall-clock meaning across the change
    office = PauseWindows.parse(["daily 09:00-17:00"], "Europe/Berlin")
    assert office.active(utc(2026, 3, 28, 8, 0)) and not office.active(utc(2026, 3, 28, 7, 59))
    assert office.active(utc(2026, 3, 29, 7, 0)) and not office.active(utc(2026, 3, 29, 6, 59))


def test_fall_back_in_berlin_repeats_the_hour() -> None:
    pw = PauseWindows.parse(["daily 02:30-02:45"], "Europe/Berlin")
    assert pw.active(utc(2026, 10, 25, 0, 35))  # 02:35 CEST, first pass
    assert not pw.active(utc(2026, 10, 25, 1, 0))  # 02:00 CET
    assert pw.active(utc(2026, 10, 25, 1, 35))  # 02:35 CET, second pass
    changes = []
    at = berlin(2026, 10, 25, 0, 0)
    for _ in range(5):
        nxt = pw.next_change(at)
        assert nxt is not None
        changes.append(nxt.astimezone(UTC))
        at = nxt
    assert changes == [
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 0, 45),
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 1, 45),
        utc(2026, 10, 26, 1, 30),
    ]


def test_next_change_across_the_week() -> None:
    pw = PauseWindows.parse(["mon-fri 09:00-17:00", "sat 22:00-06:00"], "Europe/Berlin")
    at = berlin(2026, 11, 27, 17, 0)  # Friday, just ended
    assert pw.next_change(at) == berlin(2026, 11, 28, 22, 0)
    assert pw.next_change(berlin(2026, 11, 28, 23, 0)) == berlin(2026, 11, 29, 6, 0)
    assert pw.next_change(berlin(2026, 11, 29, 6, 0)) == berlin(2026, 11, 30, 9, 0)


def test_adjacent_windows_merge_in_next_change() -> None:
    pw = PauseWindows.parse(["daily 08:00-09:00", "daily 09:00-10:00"], "UTC")
    assert pw.next_change(utc(2026, 1, 1, 8, 30)) == utc(2026, 1, 1, 10, 0)


def test_next_change_is_none_when_nothing_changes() -> None:
    assert PauseWindows.parse([], "UTC").next_change(utc(2026, 1, 1)) is None
    always = PauseWindows.parse(["daily 00:00-24:00"], "UTC")
    assert always.active(utc(2026, 1, 1, 23, 59, 59))
    assert always.next_change(utc(2026, 1, 1)) is None


def test_empty_windows_are_never_active() -> None:
    pw = PauseWindows.parse([], None)
    assert not pw and not pw.active(utc(2026, 1, 1))


def test_unknown_timezone_is_named() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        PauseWindows.parse(["daily 01:00-02:00"], "Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone ''"):
        load_zone("")


def test_naive_times_are_refused() -> None:
    pw = PauseWindows.parse(["daily 01:00-02:00"], "UTC")
    with pytest.raises(ValueError, match="no time zone"):
        pw.active(datetime(2026, 1, 1, 1, 30))
    with pytest.raises(ValueError, match="no time zone"):
        pw.next_change(datetime(2026, 1, 1, 1, 30))


def test_no_timezone_means_the_host_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    assert local_zone() == BERLIN
    pw = PauseWindows.parse(["daily 09:00-17:00"], None)
    assert pw.timezone is None and pw.zone == BERLIN
    assert pw.active(utc(2026, 7, 1, 7, 0))  # 09:00 CEST
    monkeypatch.setenv("TZ", ":Nowhere/Such")
    assert local_zone() is not None  # falls back to /etc/localtime or a fixed offset


# --- properties, against a brute-force reference ---------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


@st.composite
def windows(draw: st.DrawFn) -> str:
    days = draw(st.sets(st.integers(0, 6), min_size=1))
    names = ",".join(["mon", "tue", "wed", "thu", "fri", "sat", "sun"][d] for d in sorted(days))
    start = draw(st.integers(0, 1439))
    end = draw(st.integers(1, 1440).filter(lambda e: e != start))
    return f"{names} {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


_anywhen = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
# within 36 hours of a Berlin (and European) DST change, where the bugs would be
_near_dst = st.builds(
    lambda base, seconds: base + timedelta(seconds=seconds),
    st.sampled_from([utc(2026, 3, 29, 1, 0), utc(2026, 10, 25, 1, 0)]),
    st.integers(-36 * 3600, 36 * 3600),
)
instants = st.one_of(_anywhen, _near_dst)


def reference_active(specs: list[str], zone: str, at: datetime) -> bool:
    """Lay each window out as concrete wall-clock intervals and look for ``at`` in one."""
    wall = at.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    for spec in specs:
        w = PauseWindow.parse(spec)
        for back in (0, 1):
            day = wall.date() - timedelta(days=back)
            if day.weekday() not in w.days:
                continue
            midnight = datetime(day.year, day.month, day.day)
            length = (w.end - w.start) % 1440 or 1440
            begin = midnight + timedelta(minutes=w.start)
            if begin <= wall < begin + timedelta(minutes=length):
                return True
    return False


@settings(max_examples=300, deadline=None)
@given(st.lists(windows(), max_size=3), st.sampled_from(ZONES), instants)
def test_active_iff_inside_a_window(specs: list[str], zone: str, at: datetime) -> None:
    assert PauseWindows.parse(specs, zone).active(at) == reference_active(specs, zone, at)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(windows(), min_size=1, max_size=3),
    st.sampled_from(ZONES),
    instants,
    st.lists(st.floats(0, 1, exclude_max=True), max_size=5),
)
def test_next_change_is_the_first_change(
    specs: list[str], zone: str, at: datetime, fractions: list[float]
) -> None:
    pw = PauseWindows.parse(specs, zone)
    nxt = pw.next_change(at)
    now = pw.active(at)
    if nxt is None:
        later = [at + timedelta(hours=h) for h in range(0, 24 * 8, 7)]
        assert all(pw.active(t) == now for t in later)
        return
    assert nxt > at and pw.active(nxt) != now
    assert nxt - at <= timedelta(days=8, hours=1)
    for f in [*fractions, 0.999999]:
        point = at + (nxt - at) * f  # timedelta rounds to microseconds: may reach nxt
        assert pw.active(point) == now or point >= nxt
    assert pw.active(nxt - timedelta(microseconds=1)) == now
