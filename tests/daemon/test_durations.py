"""parse_duration and format_duration: the syntax of every duration key in the daemon config."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svwatchd.daemon._durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s5ms", 93784.005),
        ("2m 30.5s", 150.5),
        (" 1.5h ", 5400.0),
        (".5s", 0.5),
        ("0s", 0.0),
        ("10", 10.0),
        ("2.5", 2.5),
    ],
)
def test_parses_units_and_combinations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("value", "seconds"), [(0, 0.0), (10, 10.0), (2.5, 2.5), (1e-3, 0.001)])
def test_plain_numbers_are_seconds(value: float, seconds: float) -> None:
    result = parse_duration(value)
    assert result == seconds and isinstance(result, float)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "is not a duration"),
        ("soon", "is not a duration"),
        ("5M", "is not a duration"),  # months or minutes? refused
        ("5 minutes", "is not a duration"),
        ("1e3s", "is not a duration"),
        ("s", "is not a duration"),
        ("30m1h", "largest first"),
        ("1h1h", "largest first"),
        ("-5s", "negative"),
        (-1, "negative"),
        (-0.5, "negative"),
        (math.inf, "finite"),
        (math.nan, "finite"),
        (True, "is not a duration"),
        (False, "is not a duration"),
        (None, "an empty value"),
        ([1], "a list"),
        (10**400, "too long"),
    ],
)
def test_refuses_with_a_clear_message(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        parse_duration(value)
    if isinstance(value, str) and value:
        assert repr(value) in str(info.value)


def test_message_shows_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match=r"'500ms', '10s', '5m', '1h30m', '7d'"):
        parse_duration("ten seconds")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (0.0001, "0.1ms"),
        (1.5, "1.5s"),
        (90, "1m30s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (86400, "1d"),
        (93784.5, "1d2h3m4.5s"),
    ],
)
def test_formats_like_an_operator(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_format_refuses_what_is_not_a_duration(bad: float) -> None:
    with pytest.raises(ValueError):
        format_duration(bad)


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_format_reads_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=10**12))
def test_whole_seconds_read_back_exactly(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert "." not in text


@given(
    st.lists(
        st.tuples(st.sampled_from(["d", "h", "m", "s", "ms"]), st.integers(0, 10_000)),
        min_size=1,
        unique_by=lambda part: part[0],
    )
)
def test_parts_add_up(parts: list[tuple[str, int]]) -> None:
    order = ["d", "h", "m", "s", "ms"]
    parts.sort(key=lambda part: order.index(part[0]))
    size = {"d": 86400_000, "h": 3600_000, "m": 60_000, "s": 1000, "ms": 1}
    text = "".join(f"{n}{unit}" for unit, n in parts)
    assert parse_duration(text) == sum(n * size[unit] for unit, n in parts) / 1000
