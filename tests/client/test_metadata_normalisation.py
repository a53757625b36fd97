"""Property tests of metadata normalisation: every spelling of a valid value parses to one form."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svwatchd.errors import InvalidStreamError
from svwatchd.model.contract import MAX_SAMPRATE, MIN_SAMPRATE
from svwatchd.model.enums import Encoding, Endian
from svwatchd.model.metadata import (
    FORMAT_FIELDS,
    RESERVED_TAGS,
    match_metadata,
    parse_samprate,
    split_metadata,
)

rates = st.integers(MIN_SAMPRATE, MAX_SAMPRATE)


@given(rates)
def test_every_spelling_of_a_rate_is_the_same_rate(hz: int) -> None:
    khz = Decimal(hz) / 1000
    for spelling in (hz, str(hz), f" {hz} ", f"{hz}Hz", f"{khz}k", f"{khz}K", f"{khz} kHz"):
        assert parse_samprate(spelling) == hz, spelling


@given(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_rates_outside_the_range_are_refused(value: float) -> None:
    if MIN_SAMPRATE <= value <= MAX_SAMPRATE and float(value).is_integer():
        assert parse_samprate(value) == int(value)
    else:
        with pytest.raises(ValueError):
            parse_samprate(value)


names = st.sampled_from([e.name for e in Encoding])


@given(names, st.sampled_from(["LITTLE", "BIG"]), st.booleans())
def test_names_parse_in_any_case(encoding: str, endian: str, lower: bool) -> None:
    spell = str.lower if lower else str.swapcase
    fmt, tags = split_metadata("x.raw", {"encoding": spell(encoding), "endian": spell(endian)})
    assert fmt == {"encoding": Encoding[encoding], "endian": Endian[endian]} and tags == {}


tag_values = (
    st.text(max_size=20)
    | st.integers()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
)
tag_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda k: k not in {*FORMAT_FIELDS, *RESERVED_TAGS}
)


@given(st.dictionaries(tag_names, tag_values, max_size=6))
def test_tags_are_kept_as_given_and_match_themselves(tags: dict[str, object]) -> None:
    fmt, kept = split_metadata("x.raw", tags)
    assert fmt == {} and kept == tags
    assert all(type(kept[k]) is type(v) for k, v in tags.items())
    assert match_metadata({}, kept, tags)
    for key, value in tags.items():
        other = "something else" if value != "something else" else "another"
        assert not match_metadata({}, kept, {key: other})


@given(st.sampled_from([[1], {"a": 1}, None, float("nan"), float("inf")]))
def test_tag_values_must_be_finite_scalars(value: object) -> None:
    with pytest.raises(InvalidStreamError) as err:
        split_metadata("x.raw", {"bad": value})
    assert err.value.field == "bad" and "x.raw" in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "canonical"),
    [
        ("language", "de", "de"),
        ("track", 1, 1),
        ("track", " eng ", "eng"),
        ("split_channels", True, True),
        ("channel_labels", ["agent", " customer"], "agent,customer"),
        ("channel_labels", "agent,customer", "agent,customer"),
        ("task", "translate", "translate"),
        ("on_foreign", "hold", "hold"),
    ],
)
def test_reserved_tags_are_normalised(field: str, value: object, canonical: object) -> None:
    _, tags = split_metadata("x.wav", {field: value})
    assert tags[field] == canonical


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("language", "German"),
        ("language", 7),
        ("track", -1),
        ("track", True),
        ("track", ""),
        ("split_channels", "yes"),
        ("channel_labels", ["agent", ""]),
        ("channel_labels", ["a", "a"]),
        ("channel_labels", [1, 2]),
        ("task", "summarise"),
        ("on_foreign", "skip"),
    ],
)
def test_reserved_tags_are_validated(field: str, value: object) -> None:
    with pytest.raises(InvalidStreamError, match=field) as err:
        split_metadata("x.wav", {field: value})
    assert err.value.field == field and "x.wav" in str(err.value)
